"""A healthy FastAPI release."""
from release_base import make_app

app = make_app()
