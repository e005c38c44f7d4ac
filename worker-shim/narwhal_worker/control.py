"""The control socket to the master: one SOCK_SEQPACKET datagram a message.

The C engine reads `live` and sends heartbeats and `retire`; Python only
says `booted`.
"""

import os


def send(fd, message):
    """Sends one message; False if the master is gone."""
    if fd < 0:
        return False
    try:
        os.write(fd, message.encode("ascii"))
        return True
    except OSError:
        return False
