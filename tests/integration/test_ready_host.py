"""ready_host: the Host header of the health probe and the warm-up request.

A Django site with DEBUG off and ALLOWED_HOSTS = ['shop.example.com'] (real
Django, tests/apps/django_strict_host) answers 400 to the default
`Host: localhost`: with ready_path no worker ever becomes ready, and the
reason says so and names ready_host; with ready_host it boots, reloads, and
a reload that drops ready_host is rolled back (4: the old workers answer
the new check 400 too, but a 4xx is the check's fault, not a dependency's).
"""

import re
import signal

from deploy import reload_wait, rewrite_config

APP = {"app": "strictsite.wsgi:application", "chdir": "django_strict_host"}
HINT = (r"answered 400 to Host: localhost \(if the app checks Host, set "
        r"ready_host\)")
DISALLOWED = r"Invalid HTTP_HOST header: 'localhost'"
ROLLED_BACK = 4


def strict(narwhal, settings, wait=True):
    s = {"workers": 1, "boot_timeout": 20, "ready_interval": 0.2,
         "ready_failures": 2, "boot_retries": 0, "min_uptime": 0}
    s.update(settings)
    return narwhal(settings=s, wait=wait, **APP)


def test_probe_without_ready_host_fails_and_says_why(narwhal):
    n = strict(narwhal, {"ready_path": "/health/"}, wait=False)
    n.wait_for_log(r"worker 1 pid \d+ gen 1 probe: /health/ " + HINT, 20)
    m = n.wait_for_log(r"gen 1: stopping \((failed the probe 2 times: GET "
                       r"/health/ .*)\)$", 20)
    assert re.search(HINT + ": .*Bad Request \\(400\\)", m.group(1)), \
        m.group(1)
    assert n.find_logs(DISALLOWED)
    assert not n.find_logs(r"generation 1: live")


def test_ready_host_boots_and_a_reload_applies_it(narwhal):
    n = strict(narwhal, {"ready_path": "/health/",
                         "ready_host": "shop.example.com"})
    assert n.get("/", headers={"Host": "shop.example.com"}).body == \
        b"shop shop.example.com\n"
    assert n.get("/").status == 400  # the site is strict
    assert not n.find_logs(r"gen 1 probe:")
    assert not n.find_logs(DISALLOWED)

    mark = n.mark()
    n.signal(signal.SIGHUP)
    n.wait_live(gen=2, timeout=30)
    assert not n.find_logs(r"probe:|" + DISALLOWED, mark)

    # a reload reads ready_host again: without it, the new generation
    # fails its probe and is rolled back, with the reason
    rewrite_config(n, ready_host=None)
    r = reload_wait(n)
    assert r.returncode == ROLLED_BACK, r
    assert re.search(r"GET /health/ " + HINT, r.output), r
    # the old workers refuse the same Host, but that is the check's fault
    assert "a dependency is down" not in r.output, r
    assert n.get("/", headers={"Host": "shop.example.com"}).status == 200

    rewrite_config(n, ready_host="shop.example.com")
    r = reload_wait(n)
    assert r.returncode == 0, r
    assert n.get("/", headers={"Host": "shop.example.com"}).status == 200


def test_warmup_uses_ready_host(narwhal):
    n = strict(narwhal, {})
    # the warm-up passes on any answer below 500, but the live line warns
    n.wait_for_log(r"gen 1: live \(warm-up GET / " + HINT, 10)
    assert n.find_logs(DISALLOWED)

    n = strict(narwhal, {"ready_host": "shop.example.com"})
    assert n.find_logs(r"gen 1: live$")
    assert not n.find_logs(DISALLOWED)
