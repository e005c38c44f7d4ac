import os

from django.http import HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt


def index(request):
    return HttpResponse("django ok\n", content_type="text/plain")


def info(request):
    return JsonResponse({
        "framework": "django",
        "method": request.method,
        "path": request.path,
        "query": request.GET.dict(),
        "host": request.get_host(),
        "pid": os.getpid(),
    })


@csrf_exempt
def echo(request):
    return HttpResponse(request.body, content_type="application/octet-stream")
