"""A production-like Django site that serves one host name only: DEBUG off
and a strict ALLOWED_HOSTS, so a request with any other Host header (the
master's probe's `Host: localhost` by default) is answered 400."""

SECRET_KEY = "narwhal-tests-not-a-secret"
DEBUG = False
ALLOWED_HOSTS = ["shop.example.com"]
ROOT_URLCONF = "strictsite.urls"
WSGI_APPLICATION = "strictsite.wsgi.application"
INSTALLED_APPS = []
MIDDLEWARE = [
    "django.middleware.common.CommonMiddleware",
]
DATABASES = {}
TEMPLATES = []
USE_TZ = True
# DisallowedHost is logged on stderr, as a production site would log it.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    "loggers": {"django.security": {"handlers": ["stderr"],
                                    "level": "ERROR", "propagate": False}},
}
