"""Black-box harness: starts the real graced on 127.0.0.1 ports it picks
itself (port 0, read back from the "serving" log line), follows its JSON log,
and runs test functions with a plain pass/fail count.

Every wait is bounded and waits on an event (a log line, a socket, process
exit), never a fixed sleep.
"""
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback

GRACED = os.environ.get("GRACED_BIN") or os.path.join(
    os.path.dirname(__file__), "..", "..", "src", "graced")
TIMEOUT = 15.0  # seconds: the bound on any single wait


class Graced:
    """One running graced serve process."""

    def __init__(self, *args, env=None, spool=None, wait=True, wrap=None,
                 program=None, pass_fds=(), binary=None):
        """wrap: a command prefix that execs graced in the same process,
        e.g. ["prlimit", "--nofile=64:64", "--"]. program: another server
        built on libgraced (an example) that takes the library's options as
        --NAME VALUE, run instead of `graced serve`. pass_fds: descriptors
        the process inherits (socket activation). binary: the graced
        executable to start instead of the build's (a copy an upgrade test
        replaces)."""
        self.tmp = tempfile.TemporaryDirectory(prefix="graced-test-")
        self.spool = spool or os.path.join(self.tmp.name, "events.jsonl")
        self.program = program
        self.one_process = any(a == "--supervisor" and b == "off"
                               for a, b in zip(args, args[1:]))
        cmd = list(wrap or []) + [program or binary or GRACED]
        if program is None:
            cmd += ["serve", "--spool", self.spool]
        cmd += ["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"]
        # One event loop unless GRACED_TEST_WORKERS says how many.
        workers = os.environ.get("GRACED_TEST_WORKERS", "1")
        if not any(a.startswith("--workers") for a in args):
            cmd += ["--workers", workers]
        cmd += list(args)
        full_env = {k: v for k, v in os.environ.items()
                    if not k.startswith("GRACED_")}
        full_env.update(env or {})
        self.lines = []      # every log line, parsed (or {"raw": text})
        self.cond = threading.Condition()
        # GRACED_TEST_USER runs the daemon as that (unprivileged) user.
        user = os.environ.get("GRACED_TEST_USER") or None
        if user:
            os.chmod(self.tmp.name, 0o777)
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=full_env,
                                     user=user, pass_fds=pass_fds)
        self.exited_at = None
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.port = self.admin_port = None
        if wait:
            ev = self.wait_event("serving")
            self.port = int(ev["listen"].rsplit(":", 1)[1])
            self.admin_port = int(ev["admin"].rsplit(":", 1)[1])

    def _read(self):
        for raw in self.proc.stderr:
            text = raw.decode("utf-8", "replace").rstrip("\n")
            try:
                line = json.loads(text)
            except ValueError:
                line = {"raw": text}
            line["_at"] = time.monotonic()
            with self.cond:
                self.lines.append(line)
                self.cond.notify_all()
        self.proc.wait()
        with self.cond:
            self.exited_at = time.monotonic()
            self.cond.notify_all()

    def wait_event(self, event, timeout=TIMEOUT, pred=None, start=0):
        """Returns the first log line with this event (and pred true) at or
        after index start; fails after timeout seconds."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for line in self.lines[start:]:
                    if line.get("event") == event and (pred is None or
                                                       pred(line)):
                        return line
                left = deadline - time.monotonic()
                if self.exited_at is not None:
                    raise AssertionError(
                        "graced exited before logging %r; log:\n%s" %
                        (event, self.log_text()))
                if left <= 0:
                    raise AssertionError("no %r log line within %ss; log:\n%s"
                                         % (event, timeout, self.log_text()))
                self.cond.wait(left)

    def events(self, event):
        with self.cond:
            return [l for l in self.lines if l.get("event") == event]

    def log_text(self):
        with self.cond:
            return "\n".join(json.dumps({k: v for k, v in l.items()
                                         if k != "_at"})
                             for l in self.lines[-40:])

    def server_pid(self):
        """The pid of the process that serves: the current generation,
        the supervisor's child (or graced itself with --supervisor off, or
        a program). Memory, CPU and process states are measured there."""
        if self.program or self.one_process:
            return self.proc.pid
        self.wait_event("generation_ready")
        return self.events("generation_ready")[-1]["pid"]

    def signal(self, sig=signal.SIGTERM):
        self.proc.send_signal(sig)

    def wait_exit(self, timeout=TIMEOUT):
        """Waits for the process to exit and its log to be read fully;
        returns the exit status."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while self.exited_at is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("graced did not exit within %ss" %
                                         timeout)
                self.cond.wait(left)
        return self.proc.returncode

    def connect(self, admin=False):
        """A raw TCP connection to the public (or admin) listener."""
        s = socket.create_connection(
            ("127.0.0.1", self.admin_port if admin else self.port),
            timeout=TIMEOUT)
        return s

    def request(self, method, path, body=None, headers=None, admin=False,
                conn=None):
        """One request with http.client; returns (status, headers, body)
        where headers is a dict with lower-case names."""
        c = conn or http.client.HTTPConnection(
            "127.0.0.1", self.admin_port if admin else self.port,
            timeout=TIMEOUT)
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        data = r.read()
        hdrs = {k.lower(): v for k, v in r.getheaders()}
        if conn is None:
            c.close()
        return r.status, hdrs, data

    def json(self, method, path, body=None, admin=False):
        status, hdrs, data = self.request(method, path, body=body,
                                          admin=admin)
        return status, json.loads(data)

    def spool_lines(self):
        with open(self.spool, "rb") as f:
            return f.read().decode().splitlines()

    def close(self):
        if self.proc.poll() is None:
            # The generations first: killed alone, the supervisor would
            # leave them to drain by themselves.
            try:
                with open("/proc/%d/task/%d/children" % (
                        self.proc.pid, self.proc.pid)) as f:
                    for pid in f.read().split():
                        os.kill(int(pid), signal.SIGKILL)
            except OSError:
                pass
            self.proc.kill()
            self.proc.wait()
        self.reader.join(TIMEOUT)
        self.tmp.cleanup()


def recv_response(sock, timeout=TIMEOUT):
    """Reads one whole HTTP/1.1 response (Content-Length framed) from a raw
    socket. Returns (status, headers, body) or raises if the peer closes
    first."""
    sock.settimeout(timeout)
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed without a response: %r" % buf)
        buf += chunk
    head, rest = buf.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    hdrs = {}
    for l in lines[1:]:
        k, v = l.split(":", 1)
        hdrs[k.strip().lower()] = v.strip()
    n = int(hdrs.get("content-length", "0"))
    while len(rest) < n:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("body cut short")
        rest += chunk
    return status, hdrs, rest[:n]


def wait_closed(sock, timeout=TIMEOUT):
    """True once the peer has closed sock (EOF or reset) within timeout."""
    sock.settimeout(timeout)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def run(tests):
    """Runs each test function; prints a line per test and the closing
    'N passed, N failed' line; exits 0 only if all passed (77 if every test
    was skipped). A TEST_ONLY that picks no test is a failure: a typo must
    not pass for a green run."""
    only = os.environ.get("TEST_ONLY")
    passed = failed = skipped = 0
    if only and not any(only in t.__name__ for t in tests):
        print("TEST_ONLY=%r matches no test in %s" % (only, sys.argv[0]))
        print("0 passed, 1 failed, 0 skipped")
        sys.exit(1)
    for t in tests:
        if only and only not in t.__name__:
            continue
        start = time.monotonic()
        try:
            t()
        except SkipTest as e:
            skipped += 1
            print("SKIP %s: %s" % (t.__name__, e), flush=True)
            continue
        except Exception:
            failed += 1
            print("FAIL %s (%.2fs)" % (t.__name__, time.monotonic() - start))
            traceback.print_exc(file=sys.stdout)
            sys.stdout.flush()
            continue
        passed += 1
        print("PASS %s (%.2fs)" % (t.__name__, time.monotonic() - start),
              flush=True)
    print("%d passed, %d failed, %d skipped" % (passed, failed, skipped))
    if failed:
        sys.exit(1)
    sys.exit(77 if skipped and not passed else 0)


class SkipTest(Exception):
    pass
