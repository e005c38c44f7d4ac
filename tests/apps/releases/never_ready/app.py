"""A release that imports fine but whose ready_path never answers 2xx."""
import sys

from release_base import make_app

sys.stderr.write("never_ready: the database is unreachable\n")
sys.stderr.flush()
application = make_app(ready=lambda: False)
