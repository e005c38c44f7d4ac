"""WebSocket for ASGI apps (issue 16), with real clients: Debian's
python3-websockets and python3-wsproto, and a raw socket (wsclient.py) for
what a library will not send.

Echo of text and binary from 0 bytes to 16 MiB, fragments with pings
between them, close codes both ways, protocol violations (1002), invalid
UTF-8 (1007), oversized messages (1009), permessage-deflate, a Starlette and
a FastAPI route beside the raw ASGI app, the denial response, 1,000
sockets on one worker, backpressure both ways, keep-alive pings, and the
lifecycle: a reload closes open sockets with 1012 and they reconnect to the
new generation, a stop closes them with 1001, max_requests recycles a
worker that holds sockets.
"""

import asyncio
import json
import os
import resource
import signal
import socket
import struct
import time

import pytest
import websockets
import wsproto
import wsproto.events as wse

from conftest import T, build_request, HTTPReader, rss_kib, wait_until
from wsclient import (OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG,
                      OP_TEXT, RawWS, close_payload, frame)

MiB = 1024 * 1024


def run(coro, timeout=60):
    """Runs a client coroutine, bounded in time."""
    return asyncio.run(asyncio.wait_for(coro, T(timeout)))


def ws_url(n, path):
    return "ws://%s:%d%s" % (n.host, n.port, path)


def connect(n, path, **kw):
    kw.setdefault("max_size", None)
    kw.setdefault("open_timeout", T(20))
    kw.setdefault("close_timeout", T(10))
    return websockets.connect(ws_url(n, path), **kw)


def marker(n, name, timeout=20):
    path = os.path.join(n.marker_dir, name)
    wait_until(lambda: os.path.exists(path), timeout, what=name)
    with open(path) as f:
        return f.read()


@pytest.fixture(scope="module")
def server(narwhal_module):
    """One worker serving tests/apps/ws_app, shared by the module."""
    return narwhal_module(app="app:application", chdir="ws_app",
                          settings={"interface": "asgi", "workers": 1})


def worker_alive_and_same(n, pid):
    r = n.get("/pid")
    return r.status == 200 and int(r.body) == pid


# --- echo -------------------------------------------------------------------

@pytest.mark.parametrize("compression", ["deflate", None])
def test_echo_text_and_binary_0_to_16MiB(server, compression):
    sizes = [0, 1, 125, 126, 127, 65535, 65536, 65537, MiB, 16 * MiB]

    async def go():
        async with connect(server, "/echo", compression=compression) as ws:
            for size in sizes:
                data = os.urandom(size)
                await ws.send(data)
                assert await ws.recv() == data, size
                text = ("é" * (size // 2))[:size // 2] + "a" * (size % 2)
                await ws.send(text)
                assert await ws.recv() == text, size
    run(go(), timeout=120)


def test_fragmented_messages_with_pings_between(server):
    async def go():
        async with connect(server, "/echo", compression=None) as ws:
            await ws.send(["Hel", "lo, ", "world"])   # three frames
            assert await ws.recv() == "Hello, world"
            await ws.send([b"\x00" * 70000, b"\x01" * 3])
            assert await ws.recv() == b"\x00" * 70000 + b"\x01" * 3
            pong = await ws.ping(b"are you there")
            await asyncio.wait_for(pong, T(10))
    run(go())


def test_wsproto_fragments_and_pings_interleaved(server):
    """wsproto writes the frames; pings go between a message's fragments."""
    conn = wsproto.WSConnection(wsproto.ConnectionType.CLIENT)
    sock = socket.create_connection(server.addr, timeout=T(10))
    try:
        sock.sendall(conn.send(wse.Request(host="localhost", target="/echo")))
        events = []

        def pump(until):
            while not until():
                data = sock.recv(65536)
                assert data, "server closed"
                conn.receive_data(data)
                events.extend(conn.events())
        pump(lambda: any(isinstance(e, wse.AcceptConnection) for e in events))
        out = b""
        out += conn.send(wse.TextMessage(data="frag-1 ", message_finished=False))
        out += conn.send(wse.Ping(payload=b"p1"))
        out += conn.send(wse.TextMessage(data="frag-2 ", message_finished=False))
        out += conn.send(wse.Ping(payload=b"p2"))
        out += conn.send(wse.TextMessage(data="end", message_finished=True))
        sock.sendall(out)
        pump(lambda: any(isinstance(e, wse.TextMessage) and e.message_finished
                         for e in events))
        pongs = [e.payload for e in events if isinstance(e, wse.Pong)]
        text = "".join(e.data for e in events if isinstance(e, wse.TextMessage))
        assert pongs == [b"p1", b"p2"]
        assert text == "frag-1 frag-2 end"
        sock.sendall(conn.send(wse.CloseConnection(code=1000)))
        pump(lambda: any(isinstance(e, wse.CloseConnection) for e in events))
    finally:
        sock.close()


def test_raw_fragments_control_frames_between(server):
    ws = RawWS(server.addr, "/echo")
    try:
        assert ws.status == 101 and ws.accept_ok()
        ws.send(frame(OP_BINARY, b"ab", fin=False) + frame(OP_PING, b"1") +
                frame(OP_CONT, b"", fin=False) + frame(OP_PONG, b"x") +
                frame(OP_CONT, b"cd", fin=True))
        assert ws.recv_frame() == (True, False, OP_PONG, b"1")
        assert ws.recv_frame() == (True, False, OP_BINARY, b"abcd")
        ws.send(frame(OP_CLOSE, close_payload(1000)))
        assert ws.recv_close() == (1000, b"")
        assert ws.eof()
    finally:
        ws.close()


# --- closing ----------------------------------------------------------------

def test_client_close_code_reaches_the_app(server):
    async def go():
        async with connect(server, "/record?id=a") as ws:
            await ws.send("x")
            assert await ws.recv() == "x"
            await ws.close(4000, "bye now")
        async with connect(server, "/record?id=b") as ws:
            pass  # websockets closes with 1000
    run(go())
    assert marker(server, "disconnect-a") == "4000 bye now"
    assert marker(server, "disconnect-b") == "1000 "


def test_close_without_status_is_1005_and_abrupt_is_1006(server):
    ws = RawWS(server.addr, "/record?id=c")
    ws.send(frame(OP_CLOSE, b""))
    assert ws.recv_close() == (None, b"")  # echoed without a status
    ws.close()
    assert marker(server, "disconnect-c").split()[0] == "1005"
    ws = RawWS(server.addr, "/record?id=d")
    ws.send(frame(OP_TEXT, b"hi"))
    assert ws.recv_frame()[3] == b"hi"
    ws.close()  # TCP gone, no close frame
    assert marker(server, "disconnect-d").split()[0] == "1006"


def test_server_close_code_reaches_the_client(server):
    async def go():
        async with connect(server, "/close?code=4001&reason=later") as ws:
            with pytest.raises(websockets.ConnectionClosed):
                await ws.recv()
            return ws.close_code, ws.close_reason
    assert run(go()) == (4001, "later")

    async def go_default():
        async with connect(server, "/close") as ws:
            with pytest.raises(websockets.ConnectionClosed):
                await ws.recv()
            return ws.close_code
    assert run(go_default()) == 1000


def test_send_after_close_raises_in_the_app(server):
    async def go():
        async with connect(server, "/send-after-close") as ws:
            with pytest.raises(websockets.ConnectionClosed):
                await ws.recv()
    run(go())
    text = marker(server, "after-close")
    assert text != "no error", text


# --- protocol errors ----------------------------------------------------------

@pytest.mark.parametrize("what,data,code", [
    ("unmasked", frame(OP_TEXT, b"hi", mask=False), 1002),
    ("reserved bit", frame(OP_TEXT, b"hi", rsv2=True), 1002),
    ("reserved opcode", frame(0x3, b"hi"), 1002),
    ("fragmented ping", frame(OP_PING, b"p", fin=False), 1002),
    ("long ping", frame(OP_PING, b"p" * 126), 1002),
    ("lonely continuation", frame(OP_CONT, b"x"), 1002),
    ("text inside fragments", frame(OP_TEXT, b"a", fin=False) +
     frame(OP_TEXT, b"b"), 1002),
    ("bad close code", frame(OP_CLOSE, close_payload(1005)), 1002),
    ("RSV1 without deflate", frame(OP_TEXT, b"hi", rsv1=True), 1002),
    ("invalid UTF-8", frame(OP_TEXT, b"caf\xc3"), 1007),
    ("surrogate", frame(OP_TEXT, b"\xed\xa0\x80"), 1007),
    ("bad close reason", frame(OP_CLOSE, close_payload(1000, b"\xff")), 1007),
    ("oversized", frame(OP_BINARY, b"", length=16 * MiB + 1), 1009),
])
def test_violation_gets_its_close_code_and_no_crash(server, what, data, code):
    pid = int(server.get("/pid").body)
    ws = RawWS(server.addr, "/echo")
    try:
        assert ws.status == 101
        ws.send(data)
        got, _reason = ws.recv_close()
        assert got == code, what
        assert ws.eof()
    finally:
        ws.close()
    assert worker_alive_and_same(server, pid)


def test_oversized_across_fragments_is_1009(narwhal):
    n = narwhal(app="app:application", chdir="ws_app",
                settings={"interface": "asgi", "workers": 1,
                          "ws_max_size": 1000})

    async def go():
        async with connect(n, "/echo") as ws:
            await ws.send(b"x" * 1000)      # the limit itself passes
            assert len(await ws.recv()) == 1000
            await ws.send([b"x" * 600, b"y" * 600])
            with pytest.raises(websockets.ConnectionClosed):
                await ws.recv()
            return ws.close_code
    assert run(go()) == 1009


def test_bad_handshakes_get_http_errors(server):
    def status(headers, path="/echo"):
        sock = socket.create_connection(server.addr, timeout=T(10))
        try:
            sock.sendall(build_request("GET", path, headers))
            return HTTPReader(sock).read_response()
        finally:
            sock.close()
    base = [("Upgrade", "websocket"), ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")]
    r = status(base + [("Sec-WebSocket-Version", "8")])
    assert r.status == 426 and r.header("sec-websocket-version") == "13"
    r = status(base[:2] + [("Sec-WebSocket-Key", "short"),
                           ("Sec-WebSocket-Version", "13")])
    assert r.status == 400
    r = status(base)  # no version
    assert r.status in (400, 426)


# --- the app's side -----------------------------------------------------------

def test_scope_subprotocol_and_accept_headers(server):
    async def go():
        async with connect(server, "/info?x=1",
                           subprotocols=["superchat", "chat"],
                           extra_headers={"X-Hello": "there"}) as ws:
            info = json.loads(await ws.recv())
            return info, ws.subprotocol, ws.response_headers
    info, sub, headers = run(go())
    assert info["type"] == "websocket"
    assert info["path"] == "/info" and info["query_string"] == "x=1"
    assert info["scheme"] == "ws" and info["http_version"] == "1.1"
    assert info["subprotocols"] == ["superchat", "chat"]
    assert ["x-hello", "there"] in info["headers"]
    assert info["asgi"]["version"] == "3.0"
    assert "websocket.http.response" in info["extensions"]
    assert info["client"][0] == "127.0.0.1"
    assert sub == "chat"
    assert headers["x-ws"] == "yes"


def test_reject_before_accept_is_403(server):
    ws = RawWS(server.addr, "/reject")
    try:
        assert ws.status == 403
    finally:
        ws.close()


def test_denial_response_extension(server):
    ws = RawWS(server.addr, "/deny")
    try:
        assert ws.status == 401
        assert ws.headers.get("x-denied") == "yes"
        body = ws.buf
        while len(body) < 7 and not ws.eof():
            pass
        body = ws.buf
        if "content-length" not in ws.headers:
            # chunked: the body is its one or two chunks
            assert b"denied" in body
        else:
            assert body[:7] == b"denied\n"
    finally:
        ws.close()


def test_compressed_echo_round_trips(server):
    async def go():
        async with connect(server, "/echo", compression="deflate") as ws:
            ext = ws.response_headers.get("Sec-WebSocket-Extensions", "")
            text = "the quick brown fox jumps over the lazy dog " * 5000
            for _ in range(3):   # the windows carry over between messages
                await ws.send(text)
                assert await ws.recv() == text
            await ws.send(b"")
            assert await ws.recv() == b""
            return ext
    assert "permessage-deflate" in run(go())


def test_raw_compressed_frames(server):
    ws = RawWS(server.addr, "/echo", headers=[
        ("Sec-WebSocket-Extensions",
         "permessage-deflate; client_max_window_bits")])
    try:
        assert "permessage-deflate" in ws.headers["sec-websocket-extensions"]
        # RFC 7692 7.2.3.1, then 7.2.3.2 (the window carries over)
        ws.send(frame(OP_TEXT, b"\xf2\x48\xcd\xc9\xc9\x07\x00", rsv1=True))
        ws.send(frame(OP_TEXT, b"\xf2\x00\x11\x00\x00", rsv1=True))
        import zlib
        d = zlib.decompressobj(-15)
        for _ in range(2):
            fin, rsv1, op, payload = ws.recv_frame()
            assert op == OP_TEXT
            got = d.decompress(payload + b"\x00\x00\xff\xff") if rsv1 \
                else payload
            assert got == b"Hello"
    finally:
        ws.close()


def test_deflate_off(narwhal):
    n = narwhal(app="app:application", chdir="ws_app",
                settings={"interface": "asgi", "workers": 1,
                          "ws_per_message_deflate": "false"})

    async def go():
        async with connect(n, "/echo", compression="deflate") as ws:
            await ws.send("hi")
            assert await ws.recv() == "hi"
            return ws.response_headers.get("Sec-WebSocket-Extensions")
    assert run(go()) is None


def test_starlette_route(narwhal):
    n = narwhal(app="star:app", chdir="ws_app", settings={"workers": 1})

    async def go():
        async with connect(n, "/ws") as ws:
            assert await ws.recv() == "hello from starlette"
            await ws.send("ping")
            return await ws.recv()
    assert run(go()) == "starlette: ping"


def test_fastapi_route(narwhal):
    n = narwhal(app="fast:app", chdir="ws_app", settings={"workers": 1})
    assert json.loads(n.get("/").body) == {"hello": "fastapi"}

    async def go():
        async with connect(n, "/ws/room1?user=bob") as ws:
            await ws.send(json.dumps({"n": 1}))
            return json.loads(await ws.recv())
    assert run(go()) == {"room": "room1", "user": "bob", "echo": {"n": 1}}


def test_wsgi_app_answers_upgrades_as_before(narwhal):
    n = narwhal(settings={"workers": 1})  # tests/apps/wsgi_basic
    r = n.get("/", headers={"Upgrade": "websocket", "Connection": "Upgrade",
                            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
                            "Sec-WebSocket-Version": "13"})
    assert r.status != 101


# --- scale and backpressure ----------------------------------------------------

def test_1000_concurrent_websockets_in_one_worker(narwhal):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 2300:
        pytest.skip("RLIMIT_NOFILE hard limit %d is too low" % hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 4096)
                       if hard == resource.RLIM_INFINITY
                       else min(max(soft, 4096), hard), hard))
    try:
        # worker_connections (1000 by default) caps every connection a
        # worker holds, WebSockets too: 1000 of them and one more to count
        n = narwhal(app="app:application", chdir="ws_app",
                    settings={"interface": "asgi", "workers": 1,
                              "worker_connections": 1100})
        total = 1000

        async def one(i, sockets):
            ws = await websockets.connect(ws_url(n, "/echo"),
                                          compression=None,
                                          open_timeout=T(60))
            sockets.append(ws)
            await ws.send("hello %d" % i)
            assert await ws.recv() == "hello %d" % i

        async def go():
            sockets = []
            try:
                # 100 handshakes at a time: the backlog stays short
                for start in range(0, total, 100):
                    await asyncio.gather(*(one(i, sockets) for i in
                                           range(start, start + 100)))
                async with connect(n, "/count") as ws:
                    count = int(await ws.recv())
                # all still open: each echoes once more
                await asyncio.gather(*(ws.send("again") for ws in sockets))
                got = await asyncio.gather(*(ws.recv() for ws in sockets))
                assert got == ["again"] * total
                return count
            finally:
                await asyncio.gather(*(ws.close() for ws in sockets),
                                     return_exceptions=True)
        assert run(go(), timeout=180) == total + 1
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def worker_pid(n):
    return int(n.get("/pid").body)


def test_slow_reader_app_does_not_grow_memory(server):
    """The app never calls receive(): the worker stops reading the socket
    once ws_max_queue messages wait, so the client's sends stall."""
    pid = worker_pid(server)
    before = rss_kib(pid)
    chunk = os.urandom(256 * 1024)

    async def go():
        async with connect(server, "/slow", compression=None,
                           write_limit=2 ** 16) as ws:
            sent = 0
            try:
                while sent < 1024 * MiB:
                    await asyncio.wait_for(ws.send(chunk), T(3))
                    sent += len(chunk)
            except asyncio.TimeoutError:
                pass
            return sent
    sent = run(go(), timeout=120)
    grown = (rss_kib(pid) - before) / 1024
    assert sent < 200 * MiB, "the client could send %d MiB" % (sent // MiB)
    assert grown < 120, "the worker grew %.0f MiB" % grown


def test_slow_client_does_not_grow_memory(server):
    """The app sends as fast as it can to a client that does not read:
    send() waits, the worker's memory stays bounded."""
    pid = worker_pid(server)
    before = rss_kib(pid)
    ws = RawWS(server.addr, "/flood?size=65536")
    try:
        assert ws.status == 101
        ws.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        name = "flood-%d" % pid
        count = lambda: int(marker(server, name) or 0)
        first = count()
        # it stalls: the count stops moving while nobody reads
        last = [first, time.monotonic()]

        def stalled():
            c = count()
            if c != last[0]:
                last[:] = [c, time.monotonic()]
                return False
            return time.monotonic() - last[1] > 1.0
        wait_until(stalled, 30, interval=0.1, what="the flood to stall")
        assert last[0] * 65536 < 64 * MiB, last[0]
        assert (rss_kib(pid) - before) / 1024 < 100
        # and it resumes once the client reads
        for _ in range(64):
            ws.recv_frame()
        wait_until(lambda: count() > last[0], 20, what="the flood to resume")
    finally:
        ws.close()


def test_keepalive_ping_and_timeout(narwhal):
    n = narwhal(app="app:application", chdir="ws_app",
                settings={"interface": "asgi", "workers": 1,
                          "ws_ping_interval": 0.5, "ws_ping_timeout": 1})
    # a client that answers pings (websockets does) stays open
    async def go():
        async with connect(n, "/echo") as ws:
            await asyncio.sleep(3)
            await ws.send("still here")
            return await ws.recv()
    assert run(go()) == "still here"
    # one that does not is closed with 1011
    ws = RawWS(n.addr, "/echo")
    try:
        _fin, _rsv1, op, _payload = ws.recv_frame()
        assert op == OP_PING
        code, _reason = ws.recv_close()
        assert code == 1011
    finally:
        ws.close()


# --- lifecycle ------------------------------------------------------------------

def test_reload_closes_with_1012_and_clients_reconnect(narwhal):
    n = narwhal(app="app:application", chdir="ws_app",
                settings={"interface": "asgi", "workers": 2,
                          "graceful_timeout": 10})

    async def go():
        sockets = [await websockets.connect(ws_url(n, "/finish?id=%d" % i),
                                            open_timeout=T(20))
                   for i in range(8)]
        for ws in sockets:
            await ws.send("before")
            assert await ws.recv() == "before"
        mark = n.mark()
        n.signal(signal.SIGHUP)
        codes = []
        for ws in sockets:
            with pytest.raises(websockets.ConnectionClosed):
                await asyncio.wait_for(ws.recv(), T(60))
            codes.append(ws.close_code)
        await asyncio.get_running_loop().run_in_executor(
            None, lambda: n.wait_for_log(r"generation 2: live", 60, mark))
        # reconnect: the new generation answers
        async with connect(n, "/pid") as ws:
            pid_gen = await ws.recv()
        return codes, pid_gen
    codes, pid_gen = run(go(), timeout=120)
    assert codes == [1012] * 8
    assert pid_gen.split()[1] == "2"
    # the app saw the close and had the chance to finish its work
    for i in range(8):
        assert marker(n, "finished-%d" % i) == "1012"


def test_stop_closes_with_1001(narwhal):
    n = narwhal(app="app:application", chdir="ws_app",
                settings={"interface": "asgi", "workers": 1})

    async def go():
        async with connect(n, "/finish?id=stop") as ws:
            await ws.send("x")
            await ws.recv()
            n.signal(signal.SIGTERM)
            with pytest.raises(websockets.ConnectionClosed):
                await asyncio.wait_for(ws.recv(), T(30))
            return ws.close_code
    assert run(go()) == 1001
    assert n.wait_exit(30) == 0
    assert marker(n, "finished-stop") == "1001"


def test_max_requests_recycles_a_worker_with_open_sockets(narwhal):
    n = narwhal(app="app:application", chdir="ws_app",
                settings={"interface": "asgi", "workers": 1,
                          "max_requests": 3, "max_requests_jitter": 0})

    async def go():
        sockets = [await websockets.connect(ws_url(n, "/pid"),
                                            open_timeout=T(20))
                   for _ in range(3)]
        first = {(await ws.recv()).split()[0] for ws in sockets}
        codes = []
        for ws in sockets:
            with pytest.raises(websockets.ConnectionClosed):
                await asyncio.wait_for(ws.recv(), T(60))
            codes.append(ws.close_code)
        async with connect(n, "/pid") as ws:
            second = (await ws.recv()).split()[0]
        return first, codes, second
    first, codes, second = run(go(), timeout=120)
    assert len(first) == 1 and second not in first
    assert codes == [1012] * 3
