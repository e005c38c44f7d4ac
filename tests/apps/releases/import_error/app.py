"""A release that imports a module nobody shipped."""
import narwhal_release_missing_dependency  # noqa: F401

from release_base import make_app

application = make_app()
