"""A private PostgreSQL server for the benchmarks that need one.

`PgServer(parent).start()` runs initdb into a new directory under parent,
starts postgres on 127.0.0.1 and an unused port (trust authentication, its
Unix socket in the same directory, fsync off), and `stop()` stops it:
`pg_ctl stop -m fast`, then SIGKILL of the postmaster it started if that
is still there. PostgreSQL refuses to run as root, so under root the server
runs as `nobody`. Every step is bounded in time.

`find_pg_bin()` is None when no PostgreSQL server is installed (Debian's
postgresql package): callers skip. The integration tests have their own
(tests/integration/pg.py), which needs pytest.
"""

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time

PG_USER = "postgres"  # the superuser initdb creates


def find_pg_bin():
    """The newest /usr/lib/postgresql/<v>/bin holding initdb, or PG_BIN."""
    if os.environ.get("PG_BIN"):
        return os.environ["PG_BIN"]
    found = [d for d in glob.glob("/usr/lib/postgresql/*/bin")
             if os.access(os.path.join(d, "initdb"), os.X_OK)]
    found.sort(key=lambda d: [int(x) for x in
                              d.split("/")[-2].split(".") if x.isdigit()])
    return found[-1] if found else None


def _free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class PgServer:
    def __init__(self, parent=None, bin_dir=None):
        self.bin = bin_dir or find_pg_bin()
        self.parent = parent or tempfile.gettempdir()
        self.dir = None
        self.port = None
        self.postmaster = None
        self.run_as = None
        if os.geteuid() == 0:
            self.run_as = pwd.getpwnam("nobody")

    # -- where it is -----------------------------------------------------------

    def dsn(self, dbname="postgres"):
        return "host=127.0.0.1 port=%d user=%s dbname=%s" % (
            self.port, PG_USER, dbname)

    def env(self, dbname="postgres"):
        """libpq's variables (what Django's settings in the tests read)."""
        return {"PGHOST": "127.0.0.1", "PGPORT": str(self.port),
                "PGUSER": PG_USER, "PGDATABASE": dbname,
                "PG_DSN": self.dsn(dbname)}

    # -- life ------------------------------------------------------------------

    def _run(self, argv, timeout):
        kw = {}
        if self.run_as is not None:
            kw = {"user": self.run_as.pw_uid, "group": self.run_as.pw_gid,
                  "extra_groups": []}
        return subprocess.run(argv, capture_output=True, text=True,
                              timeout=timeout, cwd=self.dir,
                              start_new_session=True, **kw)

    def start(self, timeout=60):
        if self.bin is None:
            raise RuntimeError("no PostgreSQL server binaries installed")
        # A directory of its own with a short path: the Unix socket's path
        # must fit in 108 bytes, and `nobody` must be able to reach it.
        self.dir = tempfile.mkdtemp(prefix="nwpg-", dir="/tmp")
        data = os.path.join(self.dir, "data")
        if self.run_as is not None:
            os.chown(self.dir, self.run_as.pw_uid, self.run_as.pw_gid)
        r = self._run([os.path.join(self.bin, "initdb"), "-D", data, "-U",
                       PG_USER, "--auth=trust", "-E", "UTF8",
                       "--no-locale", "--no-sync"], timeout)
        if r.returncode != 0:
            raise RuntimeError("initdb failed:\n%s%s" % (r.stdout, r.stderr))
        for _ in range(5):
            self.port = _free_port()
            opts = ("-c listen_addresses=127.0.0.1 -p %d -k %s -c fsync=off "
                    "-c synchronous_commit=off -c full_page_writes=off "
                    "-c max_connections=200" % (self.port, self.dir))
            r = self._run([os.path.join(self.bin, "pg_ctl"), "start", "-w",
                           "-t", str(int(timeout)), "-D", data, "-l",
                           os.path.join(self.dir, "server.log"), "-o", opts],
                          timeout + 10)
            if r.returncode == 0:
                break
            if "could not bind" not in self.log():
                raise RuntimeError("pg_ctl start failed:\n%s%s\n%s" % (
                    r.stdout, r.stderr, self.log()))
        else:
            raise RuntimeError("postgres found no free port:\n" + self.log())
        with open(os.path.join(data, "postmaster.pid")) as f:
            self.postmaster = int(f.readline())
        return self

    def log(self):
        try:
            with open(os.path.join(self.dir, "server.log")) as f:
                return f.read()[-3000:]
        except OSError:
            return ""

    def stop(self, timeout=30):
        if self.dir is None:
            return
        data = os.path.join(self.dir, "data")
        if self.postmaster is not None:
            try:
                self._run([os.path.join(self.bin, "pg_ctl"), "stop", "-w",
                           "-m", "fast", "-t", str(int(timeout)), "-D",
                           data], timeout + 10)
            except subprocess.TimeoutExpired:
                pass
            deadline = time.monotonic() + 5
            while _alive(self.postmaster) and time.monotonic() < deadline:
                time.sleep(0.1)
            if _alive(self.postmaster):
                try:
                    os.kill(self.postmaster, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def _alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2] != "Z"
