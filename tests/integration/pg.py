"""A private PostgreSQL cluster for the deploy tests (Debian's postgresql).

`PgCluster` runs initdb in a temporary directory as an unprivileged user
(`postgres` when the tests run as root, else the current user), starts the
server on a free loopback port with its Unix socket in that directory, and
makes a role `app` (password `app-secret`) owning a database `app`. `stop()`
and `start()` simulate an outage; `destroy()` stops the server with
`pg_ctl stop -m immediate` and removes the directory. Everything is bounded
in time and touches only the processes this fixture started (pg_ctl's own
postmaster, found by its pid file).
"""

import os
import pwd
import shutil
import socket
import subprocess
import tempfile

import pytest

from conftest import T

PG_BIN = "/usr/lib/postgresql/15/bin"
PASSWORD = "app-secret"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class PgCluster:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="nwpg-", dir="/tmp")
        self.data = os.path.join(self.dir, "data")
        self.port = free_port()
        self.host = "127.0.0.1"
        self.user = "app"
        self.password = PASSWORD
        self.database = "app"
        self.runas = None
        if os.geteuid() == 0:
            self.runas = "postgres"
            pw = pwd.getpwnam(self.runas)
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        os.chmod(self.dir, 0o755)

    def _run(self, argv, timeout=60, check=True):
        if self.runas is not None:
            argv = ["runuser", "-u", self.runas, "--"] + argv
        r = subprocess.run(argv, capture_output=True, text=True,
                           timeout=T(timeout), cwd=self.dir)
        if check and r.returncode != 0:
            raise AssertionError("%s failed (%d):\n%s%s" % (
                argv, r.returncode, r.stdout, r.stderr))
        return r

    def init(self):
        pwfile = os.path.join(self.dir, "pw")
        with open(pwfile, "w") as f:
            f.write(PASSWORD + "\n")
        if self.runas is not None:
            pw = pwd.getpwnam(self.runas)
            os.chown(pwfile, pw.pw_uid, pw.pw_gid)
        self._run([os.path.join(PG_BIN, "initdb"), "-D", self.data,
                   "-U", self.user, "--pwfile", pwfile,
                   "--auth-local=trust", "--auth-host=scram-sha-256",
                   "-E", "UTF8", "--no-instructions"], timeout=120)
        os.unlink(pwfile)
        with open(os.path.join(self.data, "postgresql.conf"), "a") as f:
            f.write("\nlisten_addresses = '127.0.0.1'\nport = %d\n"
                    "unix_socket_directories = '%s'\nfsync = off\n"
                    "max_connections = 60\n" % (self.port, self.dir))
        return self

    def running(self):
        return self._run([os.path.join(PG_BIN, "pg_ctl"), "-D", self.data,
                          "status"], check=False).returncode == 0

    def start(self):
        if self.running():
            return self
        self._run([os.path.join(PG_BIN, "pg_ctl"), "-D", self.data, "-l",
                   os.path.join(self.dir, "log"), "-w", "-t", "60",
                   "start"], timeout=90)
        return self

    def createdb(self):
        self._run([os.path.join(PG_BIN, "createdb"), "-h", self.dir, "-p",
                   str(self.port), "-U", self.user, self.database])
        return self

    def stop(self, mode="fast"):
        self._run([os.path.join(PG_BIN, "pg_ctl"), "-D", self.data, "-w",
                   "-t", "60", "-m", mode, "stop"], timeout=90, check=False)

    def env(self, password=None):
        """What the test apps read to find the database."""
        return {"DB_HOST": self.host, "DB_PORT": str(self.port),
                "DB_USER": self.user, "DB_NAME": self.database,
                "DB_PASSWORD": self.password if password is None
                else password}

    def destroy(self):
        self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)


def have_postgres():
    return os.access(os.path.join(PG_BIN, "initdb"), os.X_OK)


@pytest.fixture(scope="module")
def pg():
    if not have_postgres():
        pytest.skip("PostgreSQL 15 is not installed (make deps)")
    cluster = PgCluster()
    try:
        cluster.init().start().createdb()
        yield cluster
    finally:
        cluster.destroy()
