"""A release with a syntax error."""
from release_base import make_app

def broken(:
    pass

application = make_app()
