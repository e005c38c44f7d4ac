"""TLS in the workers: certfile, keyfile, ca_certs, cert_reqs, ciphers.

A module fixture makes a test CA, server certificates (two serials, for a
renewal) and a client certificate with the `openssl` CLI in a temporary
directory. Clients are the real ones: curl with --cacert (keep-alive, a
POST body, a chunked upload), Python's ssl for what curl cannot show, and
the websockets client for wss. All on loopback, bounded in time.
"""

import asyncio
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time

import pytest
import websockets

from conftest import BIN, PYTHON, T, wait_until


def openssl(*args, cwd):
    subprocess.run(["openssl"] + list(args), cwd=cwd, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   timeout=T(30))


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("pki"))
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
          "-nodes"]
    openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem",
            "-days", "2", "-subj", "/CN=narwhal test CA", cwd=d)
    with open(os.path.join(d, "server.ext"), "w") as f:
        f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    with open(os.path.join(d, "client.ext"), "w") as f:
        f.write("extendedKeyUsage=clientAuth\n")
    for name, serial, ext in (("server", "1001", "server.ext"),
                              ("renewed", "2002", "server.ext"),
                              ("client", "3003", "client.ext")):
        openssl("req", *ec, "-keyout", name + ".key", "-out", name + ".csr",
                "-subj", "/CN=%s" % ("localhost" if name != "client"
                                     else "test client"), cwd=d)
        openssl("x509", "-req", "-in", name + ".csr", "-CA", "ca.pem",
                "-CAkey", "ca.key", "-set_serial", serial, "-days", "2",
                "-extfile", ext, "-out", name + ".pem", cwd=d)
    return d


def live_files(pki, where):
    """The server's files, copied where a renewal can replace them."""
    for name in ("server.pem", "server.key"):
        shutil.copy(os.path.join(pki, name), os.path.join(where, name))
    return os.path.join(where, "server.pem"), os.path.join(where, "server.key")


def tls_settings(pki, where, **more):
    cert, key = live_files(pki, where)
    s = {"certfile": cert, "keyfile": key}
    s.update(more)
    return s


def https(n, path="/"):
    return "https://127.0.0.1:%d%s" % (n.port, path)


def curl(pki, *args, timeout=20):
    argv = ["curl", "-sS", "--max-time", str(T(timeout)), "--cacert",
            os.path.join(pki, "ca.pem")] + list(args)
    return subprocess.run(argv, capture_output=True, text=True,
                          timeout=T(timeout) + 10)


def peer_serial(n, pki):
    """The serial number of the certificate the server shows."""
    ctx = ssl.create_default_context(cafile=os.path.join(pki, "ca.pem"))
    with socket.create_connection(("127.0.0.1", n.port), T(10)) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            return s.getpeercert()["serialNumber"]


def test_curl_keepalive_post_chunked_and_https_scheme(narwhal, pki):
    n = narwhal(settings=tls_settings(pki, narwhal.workdir(), workers=1))
    # two requests on one connection: keep-alive over TLS
    r = curl(pki, "-w", "|%{http_code} %{num_connects}|",
             https(n), https(n, "/environ"))
    assert r.returncode == 0, r.stderr
    parts = r.stdout.split("|")
    assert parts[:2] == ["Hello, world!\n", "200 1"], parts
    env = json.loads(parts[2])
    assert parts[3] == "200 0", parts  # no new connection: kept alive
    assert env["wsgi.url_scheme"] == "https"
    assert env["SERVER_PORT"] == str(n.port)

    body = "x" * 100000
    r = curl(pki, "--data-binary", body, https(n, "/echo"))
    assert r.returncode == 0 and r.stdout == body, r.stderr
    r = curl(pki, "-H", "Transfer-Encoding: chunked", "--data-binary",
             "chunked body", https(n, "/echo"))
    assert r.returncode == 0 and r.stdout == "chunked body", r.stderr
    # a large answer goes out record by record; a file without sendfile
    r = curl(pki, "-o", os.devnull, "-w", "%{size_download}",
             https(n, "/big?n=3000000"))
    assert r.returncode == 0 and r.stdout == "3000000", r.stderr
    r = curl(pki, https(n, "/file"))
    with open(os.path.join(os.path.dirname(__file__), "..", "apps",
                           "wsgi_basic", "app.py")) as f:
        assert r.stdout == f.read()
    # the health probe still passed over the private socket: plain HTTP
    assert n.find_logs(r"gen 1: live")
    assert n.find_logs(r"tls: every bind speaks TLS, certificate "
                       r"\S+/server.pem$")


def test_client_certificates_required(narwhal, pki):
    n = narwhal(settings=tls_settings(
        pki, narwhal.workdir(), workers=1, cert_reqs=2,
        ca_certs=os.path.join(pki, "ca.pem")))
    r = curl(pki, https(n))
    assert r.returncode != 0  # refused in the handshake
    r = curl(pki, "--cert", os.path.join(pki, "client.pem"), "--key",
             os.path.join(pki, "client.key"), https(n))
    assert r.returncode == 0 and r.stdout == "Hello, world!\n", r.stderr
    # the refused handshake harmed nothing
    r = curl(pki, "--cert", os.path.join(pki, "client.pem"), "--key",
             os.path.join(pki, "client.key"), https(n, "/pid"))
    assert int(r.stdout) in n.worker_pids()


def test_renewed_certificate_is_served_after_reload(narwhal, pki):
    where = narwhal.workdir()
    n = narwhal(settings=tls_settings(pki, where, workers=1))
    assert peer_serial(n, pki) == "03E9"  # 1001
    shutil.copy(os.path.join(pki, "renewed.pem"),
                os.path.join(where, "server.pem"))
    shutil.copy(os.path.join(pki, "renewed.key"),
                os.path.join(where, "server.key"))
    r = subprocess.run([BIN, "reload", "--wait", "-c", n.config_path],
                       capture_output=True, text=True, timeout=T(60))
    assert r.returncode == 0, r.stdout + r.stderr
    assert peer_serial(n, pki) == "07D2"  # 2002
    r = curl(pki, "-v", https(n))
    assert r.returncode == 0 and r.stdout == "Hello, world!\n"


def test_bad_key_on_reload_keeps_the_old_workers(narwhal, pki):
    where = narwhal.workdir()
    n = narwhal(settings=tls_settings(pki, where, workers=1))
    pids = n.worker_pids()
    with open(os.path.join(where, "server.key"), "w") as f:
        f.write("-----BEGIN PRIVATE KEY-----\nnot a key\n"
                "-----END PRIVATE KEY-----\n")
    mark = n.mark()
    n.signal(signal.SIGHUP)
    n.wait_for_log(r"reload refused, nothing changed: \S+narwhal.ini:\d+: "
                   r"keyfile: \S+server.key: no usable PEM private key",
                   since=mark)
    r = subprocess.run([BIN, "--check-config", "-c", n.config_path],
                       capture_output=True, text=True, timeout=T(30))
    assert r.returncode == 1 and "keyfile: " in r.stderr, r.stderr
    # the old workers serve on, with the old (still loaded) certificate
    r = curl(pki, https(n, "/pid"))
    assert r.returncode == 0 and int(r.stdout) in pids, r.stderr
    assert n.worker_pids() == pids
    # the other key of the pair: named as not matching
    shutil.copy(os.path.join(pki, "renewed.key"),
                os.path.join(where, "server.key"))
    r = subprocess.run([BIN, "--check-config", "-c", n.config_path],
                       capture_output=True, text=True, timeout=T(30))
    assert r.returncode == 1 and "the key does not match the certificate" \
        in r.stderr, r.stderr


def test_check_config_names_the_file_and_key(narwhal, pki):
    d = narwhal.workdir()
    ini = os.path.join(d, "n.ini")
    with open(ini, "w") as f:
        f.write("[narwhal]\napp = app:application\nchdir = %s\n"
                "certfile = %s/missing.pem\n" % (d, d))
    r = subprocess.run([BIN, "--check-config", "-c", ini],
                       capture_output=True, text=True, timeout=T(30))
    assert r.returncode == 1
    assert "n.ini:4: certfile: %s/missing.pem: No such file or " \
        "directory" % d in r.stderr, r.stderr
    with open(ini, "a") as f:
        f.write("cert_reqs = required\n")
    shutil.copy(os.path.join(pki, "server.pem"), os.path.join(d, "missing.pem"))
    r = subprocess.run([BIN, "--check-config", "-c", ini],
                       capture_output=True, text=True, timeout=T(30))
    assert r.returncode == 1 and "cert_reqs: 2 asks clients for " \
        "certificates: set ca_certs" in r.stderr, r.stderr


def test_plain_http_on_the_tls_port_gets_400(narwhal, pki):
    n = narwhal(settings=tls_settings(pki, narwhal.workdir(), workers=1))
    pid = int(curl(pki, https(n, "/pid")).stdout)
    with socket.create_connection(("127.0.0.1", n.port), T(10)) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    assert data.startswith(b"HTTP/1.1 400 "), data
    assert b"HTTPS" in data
    # garbage that is not HTTP either: closed
    with socket.create_connection(("127.0.0.1", n.port), T(10)) as s:
        s.sendall(b"\x00" * 64)
        s.settimeout(T(10))
        assert s.recv(4096) == b""
    r = curl(pki, https(n, "/pid"))
    assert r.returncode == 0 and int(r.stdout) == pid


def test_slow_handshake_does_not_block_others(narwhal, pki):
    n = narwhal(settings=tls_settings(pki, narwhal.workdir(), workers=1,
                                      header_timeout=5))
    # a client that starts a ClientHello and stalls, and one silent
    client_hello = b""
    stalled = [socket.create_connection(("127.0.0.1", n.port), T(10))
               for _ in range(2)]
    try:
        bio_out = ssl.MemoryBIO()
        obj = ssl.create_default_context().wrap_bio(
            ssl.MemoryBIO(), bio_out, server_hostname="localhost")
        try:
            obj.do_handshake()
        except ssl.SSLWantReadError:
            client_hello = bio_out.read()
        assert len(client_hello) > 20
        stalled[0].sendall(client_hello[:20])  # half a ClientHello
        t0 = time.monotonic()
        for _ in range(5):
            r = curl(pki, https(n))
            assert r.returncode == 0 and r.stdout == "Hello, world!\n"
        assert time.monotonic() - t0 < T(10)
        # header_timeout ends the stalled handshakes
        stalled[1].settimeout(T(15))
        assert stalled[1].recv(10) == b""
    finally:
        for s in stalled:
            s.close()


def test_wss_and_https_scope_on_asgi(narwhal, pki):
    n = narwhal(app="app:application", chdir="ws_app",
                settings=tls_settings(pki, narwhal.workdir(), workers=1,
                                      interface="asgi"))
    r = curl(pki, https(n, "/pid"))
    assert r.returncode == 0 and int(r.stdout) in n.worker_pids()
    ctx = ssl.create_default_context(cafile=os.path.join(pki, "ca.pem"))

    async def talk():
        async with websockets.connect(
                "wss://localhost:%d/info" % n.port, ssl=ctx,
                open_timeout=T(20), close_timeout=T(10),
                subprotocols=["chat"]) as ws:
            info = json.loads(await ws.recv())
            await ws.send("over TLS " * 2000)  # several records
            echo = await ws.recv()
            return info, echo

    info, echo = asyncio.run(asyncio.wait_for(talk(), T(60)))
    assert info["scheme"] == "wss"
    assert echo == "over TLS " * 2000


def test_asgi_http_scope_scheme_is_https(narwhal, pki):
    n = narwhal(app="app:application", chdir="asgi_raw",
                settings=tls_settings(pki, narwhal.workdir(), workers=1,
                                      interface="asgi"))
    r = curl(pki, https(n, "/scope"))
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["scheme"] == "https"
    r = curl(pki, "-H", "Transfer-Encoding: chunked", "--data-binary",
             "y" * 70000, https(n, "/echo"))
    assert r.returncode == 0 and r.stdout == "y" * 70000, r.stderr


def gunicorn_style_env(d):
    env = {"XDG_RUNTIME_DIR": os.path.join(d, "xdg-run"),
           "XDG_STATE_HOME": os.path.join(d, "xdg-state"),
           "GUNICORN_CMD_ARGS": "", "PORT": "", "WEB_CONCURRENCY": ""}
    os.makedirs(env["XDG_RUNTIME_DIR"], mode=0o700, exist_ok=True)
    return env


def test_gunicorn_flags_and_gunicorn_conf_py(narwhal, pki):
    """gunicorn's command line, then a gunicorn.conf.py, as they are
    written for gunicorn: TLS with client certificates."""
    d = narwhal.workdir()
    app = os.path.join(d, "app")
    shutil.copytree(os.path.join(os.path.dirname(__file__), "..", "apps",
                                 "wsgi_basic"), app)
    cert, key = live_files(pki, d)
    ca = os.path.join(pki, "ca.pem")
    client = ["--cert", os.path.join(pki, "client.pem"), "--key",
              os.path.join(pki, "client.key")]
    n = narwhal(use_config=False, cwd=app, process_env=gunicorn_style_env(d),
                args=["--python", PYTHON, "-b", "127.0.0.1:0",
                      "--certfile", cert, "--keyfile", key, "--ca-certs", ca,
                      "--cert-reqs", "2", "--do-handshake-on-connect",
                      "--watch", "false", "app:application"])
    assert n.find_logs(r"--do-handshake-on-connect: ignored: the handshake "
                       r"always runs first")
    assert curl(pki, https(n)).returncode != 0
    r = curl(pki, *client, https(n))
    assert r.returncode == 0 and r.stdout == "Hello, world!\n", r.stderr
    n.stop()

    with open(os.path.join(app, "gunicorn.conf.py"), "w") as f:
        f.write("import ssl\nbind = '127.0.0.1:0'\nworkers = 1\n"
                "wsgi_app = 'app:application'\nwatch = False\n"
                "certfile = %r\nkeyfile = %r\nca_certs = %r\n"
                "cert_reqs = ssl.CERT_REQUIRED\n"
                "ciphers = 'ECDHE+AESGCM'\nsuppress_ragged_eofs = True\n"
                % (cert, key, ca))
    n = narwhal(use_config=False, cwd=app, process_env=gunicorn_style_env(d),
                args=["--python", PYTHON])
    assert curl(pki, https(n)).returncode != 0
    r = curl(pki, *client, "--tls-max", "1.2", https(n, "/environ"))
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["wsgi.url_scheme"] == "https"
    assert n.find_logs(r"gunicorn.conf.py:\d+: suppress_ragged_eofs: ignored")
