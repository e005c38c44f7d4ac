from django.http import HttpResponse


def index(request):
    return HttpResponse("shop %s\n" % request.get_host(),
                        content_type="text/plain")


def health(request):
    return HttpResponse("ok\n", content_type="text/plain")
