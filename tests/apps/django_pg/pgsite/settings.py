"""Django on a real PostgreSQL, with persistent connections (CONN_MAX_AGE).

The test starts a private cluster and passes where it is in PGHOST, PGPORT,
PGUSER, PGPASSWORD and PGDATABASE; DJANGO_CONN_MAX_AGE (seconds, default 60) lets a test
turn persistent connections off.
"""

import os

SECRET_KEY = "narwhal-tests-not-a-secret"
DEBUG = False
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "pgsite.urls"
WSGI_APPLICATION = "pgsite.wsgi.application"
INSTALLED_APPS = []
MIDDLEWARE = []
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "HOST": os.environ.get("PGHOST", "127.0.0.1"),
        "PORT": os.environ.get("PGPORT", "5432"),
        "USER": os.environ.get("PGUSER", "postgres"),
        "PASSWORD": os.environ.get("PGPASSWORD", ""),
        "NAME": os.environ.get("PGDATABASE", "postgres"),
        "CONN_MAX_AGE": int(os.environ.get("DJANGO_CONN_MAX_AGE", "60")),
        "OPTIONS": {"application_name": "narwhal-django-test"},
    }
}
TEMPLATES = []
USE_TZ = True
LOGGING_CONFIG = None
