"""A raw WebSocket client for test_websocket.py: what a well-behaved
library (websockets, wsproto) will not send.

`RawWS` does the opening handshake over a plain socket and then writes any
frame, masked or not, valid or not, and reads the server's frames one at a
time. Every read is bounded by the socket timeout.
"""

import base64
import hashlib
import os
import socket
import struct

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

OP_CONT, OP_TEXT, OP_BINARY = 0x0, 0x1, 0x2
OP_CLOSE, OP_PING, OP_PONG = 0x8, 0x9, 0xA


def frame(op, payload=b"", fin=True, rsv1=False, mask=True, rsv2=False,
          length=None):
    """One client frame; `length` overrides the encoded payload length."""
    b0 = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | \
        (0x20 if rsv2 else 0) | op
    n = len(payload) if length is None else length
    m = 0x80 if mask else 0
    if n < 126:
        head = struct.pack("!BB", b0, m | n)
    elif n < 65536:
        head = struct.pack("!BBH", b0, m | 126, n)
    else:
        head = struct.pack("!BBQ", b0, m | 127, n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    masked = bytes(c ^ key[i & 3] for i, c in enumerate(payload)) \
        if len(payload) < 4096 else _mask_fast(payload, key)
    return head + key + masked


def _mask_fast(payload, key):
    n = len(payload)
    k = int.from_bytes((key * (n // 4 + 1))[:n], "little")
    return (int.from_bytes(payload, "little") ^ k).to_bytes(n, "little")


def close_payload(code, reason=b""):
    return struct.pack("!H", code) + reason


class RawWS:
    def __init__(self, addr, path="/echo", headers=(), timeout=10,
                 version="13", key=None):
        self.sock = socket.create_connection(addr, timeout=timeout)
        self.buf = b""
        self.key = key or base64.b64encode(os.urandom(16)).decode()
        lines = ["GET %s HTTP/1.1" % path, "Host: %s:%d" % addr[:2],
                 "Upgrade: websocket", "Connection: Upgrade",
                 "Sec-WebSocket-Key: %s" % self.key,
                 "Sec-WebSocket-Version: %s" % version]
        lines += ["%s: %s" % kv for kv in headers]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        head = self._read_until(b"\r\n\r\n")
        status_line, *hlines = head.decode("latin-1").split("\r\n")
        self.status = int(status_line.split()[1])
        self.headers = {}
        for line in hlines:
            if line:
                k, _, v = line.partition(":")
                self.headers[k.strip().lower()] = v.strip()

    def accept_ok(self):
        want = base64.b64encode(hashlib.sha1(
            self.key.encode() + GUID).digest()).decode()
        return self.headers.get("sec-websocket-accept") == want

    def _fill(self):
        data = self.sock.recv(1 << 20)
        if not data:
            raise EOFError("the server closed the connection")
        self.buf += data

    def _read_until(self, marker):
        while marker not in self.buf:
            self._fill()
        head, _, self.buf = self.buf.partition(marker)
        return head

    def _read(self, n):
        while len(self.buf) < n:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def read_body(self, n):
        return self._read(n)

    def send(self, data):
        self.sock.sendall(data)

    def recv_frame(self):
        """(fin, rsv1, opcode, payload) of the server's next frame."""
        b0, b1 = self._read(2)
        assert not b1 & 0x80, "a server frame must not be masked"
        n = b1 & 0x7F
        if n == 126:
            n, = struct.unpack("!H", self._read(2))
        elif n == 127:
            n, = struct.unpack("!Q", self._read(8))
        return bool(b0 & 0x80), bool(b0 & 0x40), b0 & 0x0F, self._read(n)

    def recv_close(self):
        """Skips data and pings until the close frame: (code, reason)."""
        while True:
            _fin, _rsv1, op, payload = self.recv_frame()
            if op == OP_CLOSE:
                if len(payload) < 2:
                    return None, b""
                return struct.unpack("!H", payload[:2])[0], payload[2:]

    def eof(self):
        """True if the server closed the TCP connection (after its frames)."""
        try:
            while True:
                self._fill()
        except EOFError:
            return True
        except (ConnectionResetError, socket.timeout):
            return False

    def close(self):
        self.sock.close()
