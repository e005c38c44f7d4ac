"""A release whose import never finishes (a hung connection at import)."""
import sys
import time

sys.stderr.write("hang_import: connecting to the database at import\n")
sys.stderr.flush()
time.sleep(600)

from release_base import make_app  # noqa: E402

application = make_app()
