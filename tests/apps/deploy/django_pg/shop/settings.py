"""Django on PostgreSQL (psycopg2), DEBUG off, as a release would ship."""
import os

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def db_password():
    path = os.path.join(HERE, "db_password")
    if os.path.exists(path):
        with open(path) as f:
            return f.read().strip()
    return os.environ.get("DB_PASSWORD", "")


SECRET_KEY = "narwhal-tests-not-a-secret"
DEBUG = False
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "shop.urls"
WSGI_APPLICATION = "shop.wsgi.application"
INSTALLED_APPS = []
MIDDLEWARE = ["django.middleware.common.CommonMiddleware"]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "HOST": os.environ.get("DB_HOST", "127.0.0.1"),
        "PORT": os.environ.get("DB_PORT", "5432"),
        "USER": os.environ.get("DB_USER", "app"),
        "NAME": os.environ.get("DB_NAME", "app"),
        "PASSWORD": db_password(),
        "OPTIONS": {"connect_timeout": 2, "sslmode": "disable"},
    }
}
TEMPLATES = []
USE_TZ = True
LOGGING_CONFIG = None
