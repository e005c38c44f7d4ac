"""Minimal production-like Django settings: no database, DEBUG off."""

SECRET_KEY = "narwhal-tests-not-a-secret"
DEBUG = False
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "mysite.urls"
WSGI_APPLICATION = "mysite.wsgi.application"
INSTALLED_APPS = []
MIDDLEWARE = [
    "django.middleware.common.CommonMiddleware",
]
DATABASES = {}
TEMPLATES = []
USE_TZ = True
LOGGING_CONFIG = None
