"""A healthy release."""
from release_base import make_app

application = make_app()
