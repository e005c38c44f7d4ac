"""Reload, probes, rollback and recycling for every worker type (issue 14):
the tests of test_reload.py, test_rollback.py and test_recycling.py, run
again with threads, gevent and eventlet workers.

The master's side does not change with the worker type; what these show is
that a threaded or green worker keeps the contract those tests rely on:
`booted` after the import, the health check on the private socket, a drain
that finishes the requests in flight, `retire` at the request budget. The
test bodies are the originals: only deploy.FAST, the settings every
deploy test starts from, gets the worker type.
"""

import pytest

import deploy
from conftest import T
import test_recycling
import test_reload
import test_rollback

# eventlet's import alone takes 2 s of CPU (5 s on a loaded machine):
# the boot timeout that FAST keeps short for a sync worker is longer here.
# gthread: 4 threads, whose stacks fill more than the 20 stderr lines the
# master keeps for a report when a worker segfaults (the app's last words
# must still be there).
WORKER_TYPES = {
    "gthread": {"worker_class": "gthread", "threads": 4},
    "gevent": {"worker_class": "gevent", "boot_timeout": "%g" % T(30)},
    "eventlet": {"worker_class": "eventlet", "boot_timeout": "%g" % T(30)},
}


@pytest.fixture(params=list(WORKER_TYPES))
def worker_type(request, monkeypatch):
    for key, value in WORKER_TYPES[request.param].items():
        monkeypatch.setitem(deploy.FAST, key, value)
    return request.param


def test_hup_deploys_v2_under_load(narwhal, worker_type):
    test_reload.test_hup_deploys_v2_under_load(narwhal, 2, 0)


def test_worker_not_ready_gets_no_public_request(narwhal, worker_type):
    test_reload.test_worker_not_ready_gets_no_public_request(narwhal)


def test_in_flight_request_completes_across_reload(narwhal, worker_type):
    # the slow request must outlast the new generation's boot, and
    # eventlet's import alone may take 4 s on a loaded machine
    test_reload.test_in_flight_request_completes_across_reload(
        narwhal, seconds=12 if worker_type == "eventlet" else 4)


def test_rollback_import_error(narwhal, worker_type):
    test_rollback.test_import_error(narwhal)


def test_rollback_segfault_after_going_live(narwhal, worker_type):
    test_rollback.test_segfault_after_going_live(narwhal)


def test_max_requests_recycles_without_losing_capacity(narwhal, worker_type):
    test_recycling.test_max_requests_recycles_without_losing_capacity(
        narwhal)
