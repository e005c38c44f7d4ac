"""Debian packaging: `make deb` builds a package that installs, works as
installed, and uninstalls cleanly.

This installs the package for real with dpkg (CI runs as root on a
throwaway machine) and removes and purges it at the end, whatever happened.
"""

import os
import re
import shutil
import signal
import subprocess

import pytest

from conftest import REPO, T, Narwhal, _unique_dir

INSTALLED_BIN = "/usr/bin/narwhal"
INSTALLED_CONFIG = "/etc/narwhal/narwhal.ini"
UNITS = ["narwhal.service", "narwhal@.service", "narwhal.socket",
         "narwhal@.socket"]


def run(cmd, timeout=120, **kw):
    env = dict(os.environ)
    # Not the jobserver of a `make check` this may run under.
    for name in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL"):
        env.pop(name, None)
    env.update(kw.pop("env", {}))
    return subprocess.run(cmd, capture_output=True, text=True, env=env,
                          timeout=T(timeout), **kw)


def version():
    with open(os.path.join(REPO, "supervisor", "master.h")) as f:
        return re.search(r'#define NW_VERSION "([^"]+)"', f.read()).group(1)


def deb_path():
    arch = run(["dpkg", "--print-architecture"]).stdout.strip()
    return os.path.join(REPO, "narwhal_%s_%s.deb" % (version(), arch)), arch


class InstalledNarwhal(Narwhal):
    """The installed binary on the installed config; only the address and
    the directories are overridden on the command line."""

    def command(self):
        return [INSTALLED_BIN, "-c", INSTALLED_CONFIG, "-b", "127.0.0.1:0",
                "--runtime-dir", self.run_dir,
                "--state-dir", os.path.join(self.dir, "state")]


@pytest.fixture(scope="module")
def package():
    """Builds the .deb with `make deb` once for this module."""
    path, arch = deb_path()
    if os.path.exists(path):
        os.unlink(path)
    r = run(["make", "-C", REPO, "deb"], timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert os.path.isfile(path), "make deb did not write %s" % path
    return path, arch


def test_deb_metadata_and_contents(package):
    path, arch = package
    fields = {}
    for name in ("Package", "Version", "Architecture", "Depends"):
        fields[name] = run(["dpkg-deb", "-f", path, name]).stdout.strip()
    assert fields["Package"] == "narwhal"
    assert fields["Version"] == version()
    assert fields["Architecture"] == arch
    depends = [d.strip() for d in fields["Depends"].split(",")]
    for dep in ("libev4", "libinih1", "libsystemd0", "libcurl4", "libssl3",
                "python3 (>= 3.8)"):
        assert dep in depends, fields["Depends"]

    listing = run(["dpkg-deb", "-c", path])
    assert listing.returncode == 0, listing.stderr
    files = {}
    for line in listing.stdout.splitlines():
        parts = line.split()
        files[parts[-1].lstrip(".")] = (parts[0], parts[1])
    expected = [
        "/usr/bin/narwhal",
        "/usr/lib/narwhal/narwhal_worker/__init__.py",
        "/usr/lib/narwhal/narwhal_worker/__main__.py",
        "/usr/lib/narwhal/narwhal_worker/_http.abi3.so",
        "/etc/narwhal/narwhal.ini",
        "/usr/share/man/man8/narwhal.8.gz",
        "/usr/share/man/man5/narwhal.ini.5.gz",
        "/usr/share/doc/narwhal/copyright",
    ] + ["/lib/systemd/system/" + u for u in UNITS]
    for f in expected:
        assert f in files, "%s not in the package:\n%s" % (f, listing.stdout)
    for f, (mode, owner) in files.items():
        assert owner == "root/root", (f, owner)
        if mode.startswith("-"):
            want = "-rwxr-xr-x" if f == "/usr/bin/narwhal" else "-rw-r--r--"
            assert mode == want, (f, mode)

    with_control = run(["dpkg-deb", "-I", path, "conffiles"])
    assert with_control.stdout.split() == [INSTALLED_CONFIG]


def test_deb_installs_works_and_uninstalls(package, tmp_path):
    if os.geteuid() != 0:
        pytest.skip("dpkg -i needs root (CI runs as root)")
    path, _arch = package
    try:
        r = run(["dpkg", "-i", path])
        assert r.returncode == 0, r.stdout + r.stderr
        check_installed()
        serve_installed()
        verify_installed_units()
        r = run(["dpkg", "-r", "narwhal"])
        assert r.returncode == 0, r.stdout + r.stderr
        for f in [INSTALLED_BIN, "/usr/lib/narwhal",
                  "/usr/share/narwhal"] + \
                ["/lib/systemd/system/" + u for u in UNITS]:
            assert not os.path.lexists(f), "%s left after dpkg -r" % f
        # a removed (not purged) package keeps its edited config
        assert os.path.exists(INSTALLED_CONFIG)
        r = run(["dpkg", "--purge", "narwhal"])
        assert r.returncode == 0, r.stdout + r.stderr
        assert not os.path.exists("/etc/narwhal")
    finally:
        run(["dpkg", "--purge", "narwhal"])


def check_installed():
    assert os.access(INSTALLED_BIN, os.X_OK)
    r = run([INSTALLED_BIN, "--version"])
    assert r.returncode == 0 and r.stdout.strip() == "narwhal " + version()
    # the example config, as installed, is valid
    r = run([INSTALLED_BIN, "--check-config", "-c", INSTALLED_CONFIG])
    assert r.returncode == 0, r.stdout + r.stderr
    assert "ok" in r.stdout
    listed = run(["dpkg", "-L", "narwhal"]).stdout.split()
    assert INSTALLED_BIN in listed
    # man pages render (unless this system's dpkg excludes them)
    for page in ("/usr/share/man/man8/narwhal.8.gz",
                 "/usr/share/man/man5/narwhal.ini.5.gz"):
        if os.path.exists(page):
            r = run(["man", "-l", page], env={"MANWIDTH": "80",
                                              "MANPAGER": "cat",
                                              "PAGER": "cat"})
            assert r.returncode == 0 and "NARWHAL" in r.stdout, r.stderr


def serve_installed():
    workdir = _unique_dir("installed")
    n = InstalledNarwhal(workdir)
    try:
        n.start(wait=True, timeout=30)
        # it found the installed worker package by itself
        n.wait_for_log(r"worker shim /usr/lib/narwhal$", 1)
        r = n.get("/")
        assert r.status == 200 and r.body.startswith(b"Hello"), r
        # ready_path is on in the installed config: its probe answered
        assert n.get("/health/ready").status == 200
        n.signal(signal.SIGTERM)
        assert n.wait_exit(20) == 0
    finally:
        n.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def verify_installed_units():
    names = [u.replace("@.", "@test.") for u in UNITS]
    have_man = run(["man", "-w", "systemd.socket.5"]).returncode == 0
    r = run(["systemd-analyze", "verify",
             "--man=yes" if have_man else "--man=no"] + names,
            env={"SYSTEMD_LOG_LEVEL": "notice"})
    out = (r.stdout + r.stderr).strip()
    assert r.returncode == 0 and out == "", out
