import os

from django.db import connection
from django.http import HttpResponse

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
with open(os.path.join(HERE, "VERSION")) as f:
    VERSION = f.read().strip()


def index(request):
    return HttpResponse(VERSION + "\n", content_type="text/plain")


def ready(request):
    try:
        with connection.cursor() as cur:
            cur.execute("SELECT 1")
    except Exception as e:
        connection.close()
        return HttpResponse("db: %s: %s\n" % (type(e).__name__, e),
                            status=503, content_type="text/plain")
    return HttpResponse("ok\n", content_type="text/plain")
