import os
import threading

from django.db import connection
from django.http import JsonResponse


def db(request):
    """SELECT pg_sleep(s) on this thread's connection; which backend ran it."""
    seconds = float(request.GET.get("s", "0"))
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid(), pg_sleep(%s)", [seconds])
        backend = cursor.fetchone()[0]
    return JsonResponse({"backend": backend, "thread": threading.get_ident(),
                         "pid": os.getpid()})
