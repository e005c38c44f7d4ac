"""A release whose first boot works and every later boot fails to import.

The first worker to import creates first-boot-<VERSION> in $MARKER_DIR with
O_EXCL; any later worker finds it there and raises, as a release would that
breaks on a shared resource the first worker took (a lock, a migration).
"""
import os

from release_base import VERSION, marker, make_app

path = marker("first-boot-" + VERSION)
try:
    os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
except FileExistsError:
    raise RuntimeError("second_fails: %s exists, this is not the first boot"
                       % path)
application = make_app()
