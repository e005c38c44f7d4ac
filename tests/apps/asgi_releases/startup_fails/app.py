"""A FastAPI release whose lifespan startup raises: it never boots."""
from release_base import make_app

app = make_app(fail_startup=True)
