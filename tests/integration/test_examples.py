"""libgraced as a user sees it (docs/library.md): the three examples, built
by make check against the shared library, run as black boxes and drained
with SIGTERM; the shared library exports graced.h and nothing else; and
`make install` into a scratch DESTDIR gives a library, header, graced.pc,
daemon and manual pages with which a program outside the tree builds with
`pkg-config --cflags --libs graced` alone, serves and drains; and a program
linked with the installed static archive may define functions named like
the library's internals.
"""
import glob
import http.client
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time

from harness import GRACED, TIMEOUT, Graced, run

BUILDDIR = os.path.dirname(os.path.dirname(os.path.abspath(GRACED)))
SRCDIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")


def example(name, *args):
    return Graced(*args, program=os.path.join(BUILDDIR, "examples", name))


def make_var(name):
    """A variable as configure wrote it into the build's Makefile."""
    with open(os.path.join(BUILDDIR, "Makefile")) as f:
        for line in f:
            if line.startswith(name + " = "):
                return line.split(" = ", 1)[1].strip()
    return ""


def exported(lib):
    out = subprocess.run(["nm", "-D", "--defined-only", lib], check=True,
                         stdout=subprocess.PIPE).stdout.decode()
    return [l.split()[-1] for l in out.splitlines() if l.strip()]


def drain_hello(g):
    """/hello answers; after SIGTERM /healthz says 503 while /hello is still
    served (with Connection: close), then the process exits 0."""
    status, body = g.json("GET", "/hello")
    assert (status, body) == (200, {"hello": "world"}), (status, body)
    g.signal(signal.SIGTERM)
    g.wait_event("drain_begin")
    status, _ = g.json("GET", "/healthz")
    assert status == 503, status
    status, hdrs, data = g.request("GET", "/hello")
    assert status == 200 and hdrs.get("connection") == "close", (status,
                                                                  hdrs)
    assert g.wait_exit() == 0, g.log_text()
    g.wait_event("stopped")


def test_hello_serves_and_drains():
    g = example("hello", "--drain-delay", "1")
    try:
        drain_hello(g)
    finally:
        g.close()


def test_longpoll_ends_waiting_polls_when_the_drain_begins():
    # The drain delay is longer than the wait below: the poll must be ended
    # by on_drain, not by the listener closing or the 30 s timer.
    g = example("longpoll", "--drain-delay", "3")
    result = {}

    def poll():
        c = http.client.HTTPConnection("127.0.0.1", g.port, timeout=TIMEOUT)
        c.request("GET", "/wait")
        r = c.getresponse()
        result["status"], result["body"] = r.status, json.loads(r.read())
        result["at"] = time.monotonic()
        c.close()

    try:
        t = threading.Thread(target=poll)
        t.start()
        # Waiting until the poll is in flight: /healthz counts itself too.
        deadline = time.monotonic() + TIMEOUT
        while g.json("GET", "/healthz")[1]["in_flight"] < 2:
            assert time.monotonic() < deadline, "the poll never arrived"
        assert "status" not in result, result
        g.signal(signal.SIGTERM)
        begin = g.wait_event("drain_begin")
        t.join(TIMEOUT)
        assert result.get("status") == 200, result
        assert result["body"] == {"event": "draining"}, result
        assert result["at"] - begin["_at"] < 1.5, "on_drain did not end it"
        # A poll that arrives while draining is answered at once.
        status, body = g.json("GET", "/wait")
        assert (status, body) == (200, {"event": "draining"}), (status, body)
        assert g.wait_exit() == 0, g.log_text()
        assert not g.events("cut_off"), g.log_text()
    finally:
        g.close()


def test_flush_writes_the_queue_in_on_stop():
    g = example("flush", "--drain-delay", "0", "--shutdown-timeout", "20")
    items = ["first", "second item", "third"]
    try:
        for i, item in enumerate(items):
            status, body = g.json("POST", "/work", body=item.encode())
            assert (status, body) == (202, {"queued": i + 1}), (status, body)
        g.signal(signal.SIGTERM)
        assert g.wait_exit() == 0, g.log_text()
        flushed = g.wait_event("flushed")
        assert flushed["items"] == 3 and flushed["lost"] == 0, flushed
        assert 0 < flushed["seconds_left"] <= 20, flushed
        # on_stop runs after the last request, before the server stops.
        stopped = g.wait_event("stopped")
        assert g.lines.index(flushed) < g.lines.index(stopped), g.log_text()
        assert g.proc.stdout.read().decode().splitlines() == items
    finally:
        g.close()


def test_shared_library_exports_only_graced_h():
    names = exported(os.path.join(BUILDDIR, "src", "lib", ".libs",
                                  "libgraced.so"))
    assert "graced_server_new" in names and "graced_version" in names, names
    others = [n for n in names if not n.startswith("graced_")]
    assert not others, others
    # Every name graced.h declares, and no other, is exported.
    with open(os.path.join(SRCDIR, "include", "graced.h")) as f:
        header = f.read()
    declared = {w.split("(")[0].lstrip("*")
                for line in header.splitlines() if line.startswith("GRACED_API")
                for w in line.split() if "(" in w}
    assert declared == set(names), declared ^ set(names)


def test_installed_library_builds_a_service_with_pkg_config():
    if shutil.which("nm") is None or shutil.which("make") is None:
        raise AssertionError("nm and make are needed")
    with tempfile.TemporaryDirectory(prefix="graced-install-") as tmp:
        dest = os.path.join(tmp, "dest")
        # A make of our own, not a part of the make check that runs us.
        env = {k: v for k, v in os.environ.items()
               if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
        p = subprocess.run(["make", "-C", BUILDDIR, "install",
                            "DESTDIR=" + dest], env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        assert p.returncode == 0, p.stdout.decode()[-3000:]
        pcs = glob.glob(os.path.join(dest, "**", "pkgconfig", "graced.pc"),
                        recursive=True)
        assert len(pcs) == 1, pcs
        libdir = os.path.dirname(os.path.dirname(pcs[0]))
        prefix = os.path.dirname(libdir)
        for path in ("lib/libgraced.so.0", "lib/libgraced.a",
                     "include/graced.h", "bin/graced",
                     "share/man/man8/graced.8", "share/man/man3/libgraced.3"):
            assert os.path.exists(os.path.join(prefix, path)), path
        names = exported(os.path.join(libdir, "libgraced.so.0"))
        assert all(n.startswith("graced_") for n in names), names

        # Outside the tree: the example's source, pkg-config and the staged
        # prefix only (--define-prefix relocates graced.pc to where it is).
        src = os.path.join(tmp, "hello.c")
        shutil.copy(os.path.join(SRCDIR, "examples", "hello.c"), src)
        env["PKG_CONFIG_PATH"] = os.path.dirname(pcs[0])
        flags = subprocess.run(
            ["pkg-config", "--define-prefix", "--cflags", "--libs", "graced"],
            check=True, env=env, stdout=subprocess.PIPE).stdout.decode()
        assert dest in flags, flags
        # A sanitizer build's library needs its runtime in the program too.
        cc = make_var("CC").split() + make_var("SAN_CFLAGS").split()
        cmd = cc + ["-o", os.path.join(tmp, "hello"), src] + flags.split()
        p = subprocess.run(cmd, cwd=tmp, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT)
        assert p.returncode == 0, (cmd, p.stdout.decode())
        saved = os.environ.get("LD_LIBRARY_PATH")
        os.environ["LD_LIBRARY_PATH"] = libdir
        try:
            g = Graced("--drain-delay", "0.5",
                       program=os.path.join(tmp, "hello"))
        finally:
            if saved is None:
                del os.environ["LD_LIBRARY_PATH"]
            else:
                os.environ["LD_LIBRARY_PATH"] = saved
        try:
            with open("/proc/%d/maps" % g.proc.pid) as f:
                assert os.path.join(libdir, "libgraced.so") in f.read()
            drain_hello(g)
        finally:
            g.close()
        static_link_keeps_internal_names_private(tmp, env, libdir, cc)


# Functions of the program's own that share a name with the library's
# internals (log.c, router.c): with the installed archive they must link.
OWN_NAMES = r"""
#include <stdio.h>
#include <graced.h>

int log_setup(void);
int router_add(void);
int log_setup(void) { return 1; }
int router_add(void) { return 2; }

int main(void)
{
	graced_log("static_link", NULL);
	graced_server_free(NULL);
	printf("%s %d\n", graced_version(), log_setup() + router_add());
	return 0;
}
"""


def static_link_keeps_internal_names_private(tmp, env, libdir, cc):
    src = os.path.join(tmp, "own_names.c")
    with open(src, "w") as f:
        f.write(OWN_NAMES)
    flags = subprocess.run(
        ["pkg-config", "--define-prefix", "--static", "--cflags", "--libs",
         "graced"], check=True, env=env,
        stdout=subprocess.PIPE).stdout.decode().split()
    exe = os.path.join(tmp, "own_names")
    cmd = (cc + ["-o", exe, src, os.path.join(libdir, "libgraced.a")] +
           [f for f in flags if f != "-lgraced"])
    p = subprocess.run(cmd, env=env, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT)
    assert p.returncode == 0, (cmd, p.stdout.decode())
    env = {k: v for k, v in env.items() if k != "LD_LIBRARY_PATH"}
    p = subprocess.run([exe], env=env, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=TIMEOUT)
    assert p.returncode == 0, p.stderr
    assert p.stdout.decode().split()[1] == "3", p.stdout
    assert b'"event":"static_link"' in p.stderr, p.stderr


if __name__ == "__main__":
    run([test_hello_serves_and_drains,
         test_longpoll_ends_waiting_polls_when_the_drain_begins,
         test_flush_writes_the_queue_in_on_stop,
         test_shared_library_exports_only_graced_h,
         test_installed_library_builds_a_service_with_pkg_config])
