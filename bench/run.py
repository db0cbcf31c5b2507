#!/usr/bin/env python3
"""graced's benchmark suite: graced against a plain evhttp server, nginx and
Go's net/http, side by side in one table. See bench/README.md.

    make bench                     # or: GRACED_BIN=src/graced python3 bench/run.py

Environment:
    GRACED_BIN      the daemon (default: ./src/graced, then ../src/graced
                    next to this script)
    BENCH_SECONDS   wrk duration per measurement (default 5)
    BENCH_REPEAT    rounds of the wrk and upgrade rows, the median reported
                    (default 3)
    BENCH_ONLY      comma-separated substrings: run only the rows whose group
                    or label contains one (e.g. keep-alive, post, access-log,
                    drain, spool-sync, upgrade, memory)
    BENCH_CONNS     idle connections for the memory and close rows (10000)
    BENCH_INSTALL   1: install missing wrk / nginx with apt-get (root only)
    BENCH_JSON      also write the raw figures to this file
    BENCH_PROFILE   1: instead of the table, run graced under callgrind for
                    20,000 keep-alive GET /healthz and print the top functions
                    (BENCH_PROFILE_OUT=FILE keeps the callgrind output)

Standard library only. Every server runs pinned to core 0, every client to
core 1; every server is killed and every temporary file removed on the way
out, also on errors and Ctrl-C.
"""

import array
import bisect
import errno
import http.client
import json
import math
import multiprocessing
import os
import pickle
import re
import resource
import selectors
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SECONDS = max(1, int(float(os.environ.get("BENCH_SECONDS", "5"))))
REPEAT = max(1, int(os.environ.get("BENCH_REPEAT", "3")))
ONLY = [s.strip().lower() for s in os.environ.get("BENCH_ONLY", "").split(",")
        if s.strip()]
WANT_CONNS = int(os.environ.get("BENCH_CONNS", "10000"))
WRK_CONNS = 50
READINESS_TRIALS = 7
EXIT_LAG_TRIALS = 10
PROFILE_REQUESTS = 20000

SERVERS = ["graced", "evhttp", "nginx", "go"]

# One 200-byte event for the POST row.
EVENT = '{"user":"user-00042","action":"page_view","path":"/products/1234",' \
        '"ts":"2024-01-01T12:00:00.000Z","pad":"'
EVENT += "x" * (200 - len(EVENT) - 2) + '"}'
assert len(EVENT) == 200

# Rows: (group, key, label, unit). The groups are what BENCH_ONLY matches
# (with the labels) and what decides which measurements run.
ROWS = [
    ("keep-alive", "ka_rps", "keep-alive GET /healthz, 50 conns: requests/s", "rps"),
    ("keep-alive", "ka_p50", "keep-alive GET /healthz: p50 latency", "ms"),
    ("keep-alive", "ka_p99", "keep-alive GET /healthz: p99 latency", "ms"),
    ("keep-alive", "ka_cpu", "keep-alive GET /healthz: server CPU per request", "us"),
    ("close", "cl_rps", "Connection: close GET /healthz, 50 conns: requests/s", "rps"),
    ("close", "cl_p50", "Connection: close GET /healthz: p50 latency", "ms"),
    ("close", "cl_p99", "Connection: close GET /healthz: p99 latency", "ms"),
    ("close", "cl_cpu", "Connection: close GET /healthz: server CPU per request", "us"),
    ("post", "po_rps", "POST /v1/events 200 B, 50 conns: requests/s", "rps"),
    ("post", "po_p50", "POST /v1/events: p50 latency", "ms"),
    ("post", "po_p99", "POST /v1/events: p99 latency", "ms"),
    ("post", "po_cpu", "POST /v1/events: server CPU per request", "us"),
    # Access logs on, to a file: graced with its defaults (--log-file),
    # nginx with access_log to a file, beside the same bare evhttp.
    ("access-log", "lg_rps", "access log on: keep-alive GET /healthz: requests/s", "rps"),
    ("access-log", "lg_p50", "access log on: p50 latency", "ms"),
    ("access-log", "lg_p99", "access log on: p99 latency", "ms"),
    ("access-log", "lg_cpu", "access log on: server CPU per request", "us"),
    ("drain readiness", "ready",
     "drain: SIGTERM to first 503 on /healthz, median of %d" % READINESS_TRIALS, "ms"),
    ("drain exit-lag", "exitlag",
     "drain: last response to exit, spool on tmpfs, median of %d" % EXIT_LAG_TRIALS, "ms"),
    ("drain exit-lag", "exitlag_disk",
     "drain: last response to exit, spool on disk, median of %d" % EXIT_LAG_TRIALS, "ms"),
    ("drain idle-close", "idleclose", "drain: close N idle keep-alive conns, SIGTERM to exit", "ms"),
    ("memory", "rss", "memory: RSS per idle keep-alive conn, N open", "KiB"),
]

def _ratio(v, a, b):
    if v.get(a) is None or v.get(b) in (None, 0):
        return None
    return v[a] / v[b]


# Targets: key -> list of (what, test(values) -> True, False or None).
TARGETS = {
    "ka_rps": [
        ("graced/evhttp >= 1.25",
         lambda v: None if _ratio(v, "graced", "evhttp") is None
         else _ratio(v, "graced", "evhttp") >= 1.25),
        ("graced/nginx >= 0.8",
         lambda v: None if _ratio(v, "graced", "nginx") is None
         else _ratio(v, "graced", "nginx") >= 0.8),
    ],
    "lg_rps": [
        ("graced/evhttp >= 1.2",
         lambda v: None if _ratio(v, "graced", "evhttp") is None
         else _ratio(v, "graced", "evhttp") >= 1.2),
        ("graced/nginx >= 0.85",
         lambda v: None if _ratio(v, "graced", "nginx") is None
         else _ratio(v, "graced", "nginx") >= 0.85),
    ],
    "ready": [("graced < 1 ms",
               lambda v: None if v.get("graced") is None else v["graced"] < 1.0)],
    "exitlag": [("graced < 5 ms",
                 lambda v: None if v.get("graced") is None else v["graced"] < 5.0)],
    "rss": [("graced <= 2.5 KiB",
             lambda v: None if v.get("graced") is None else v["graced"] <= 2.5)],
}

results = {key: {} for _, key, _, _ in ROWS}
bodies = {}         # server -> bytes of its /healthz body
log_counts = {}     # logging server -> (lines in its log, lines dropped)
notes = []
failures = []       # measurements that failed (exit status 1)
procs = []          # every process we started, for the final cleanup
TMP = None          # the run's temporary directory, set in main()
CLIENT_CPU = None   # taskset prefixes, set in main()
SERVER_CPU = None


def guard(what, fn, *args):
    """fn(*args), or None after a note when it fails: one broken server or
    measurement leaves a "-" in its cell, not an empty table."""
    try:
        return fn(*args)
    except (Exception, subprocess.TimeoutExpired) as e:
        failures.append(what)
        note("%s FAILED: %s" % (what, str(e).strip().replace("\n", " | ")[:400]))
        return None


def note(msg):
    notes.append(msg)
    print("note: " + msg, file=sys.stderr, flush=True)


def log(msg):
    print("bench: " + msg, file=sys.stderr, flush=True)


def selected(group):
    if not ONLY:
        return True
    labels = [group] + [lbl for g, _, lbl, _ in ROWS if g == group]
    return any(o in x.lower() for o in ONLY for x in labels)


# ---------------------------------------------------------------- processes

class Proc:
    """A server process. Its stdout and stderr go to a file that wait_line
    polls: no reader threads, so nothing in this script competes with the
    thread that takes the timings."""

    def __init__(self, name, argv, env=None, cwd=None):
        self.name = name
        fd, self.logpath = tempfile.mkstemp(prefix=name + "-", suffix=".log",
                                            dir=TMP)
        try:
            self.p = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                      stdout=fd, stderr=subprocess.STDOUT,
                                      env=env, cwd=cwd)
        finally:
            os.close(fd)
        self.pid = self.p.pid
        procs.append(self)

    def text(self):
        with open(self.logpath, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def mark(self):
        """A position in the output: wait_line(start=mark()) only looks at
        lines written after it."""
        return os.path.getsize(self.logpath)

    def tail(self, n=5):
        return "".join(self.text().splitlines(True)[-n:])

    def wait_line(self, regex, timeout, start=0):
        """The first whole line written at or after offset start that
        matches regex: its match object. Polls every millisecond."""
        pat = re.compile(regex)
        deadline = time.monotonic() + timeout
        while True:
            with open(self.logpath, "rb") as f:
                f.seek(start)
                data = f.read().decode("utf-8", "replace")
            for line in data.splitlines(True):
                if line.endswith("\n"):
                    m = pat.search(line)
                    if m:
                        return m
            exited = self.p.poll() is not None
            if time.monotonic() > deadline or exited:
                if exited:      # one last look: the line may be the last one
                    with open(self.logpath, "rb") as f:
                        f.seek(start)
                        m = pat.search(f.read().decode("utf-8", "replace"))
                    if m:
                        return m
                raise RuntimeError("%s: no line matching %r within %.1fs "
                                   "(exit status %s); last lines:\n%s"
                                   % (self.name, regex, timeout,
                                      self.p.poll(), self.tail()))
            time.sleep(0.001)

    def alive(self):
        return self.p.poll() is None

    def send(self, sig):
        if self.alive():
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def stop(self, sig=signal.SIGTERM, timeout=10.0):
        if sig == signal.SIGKILL:
            self.kill()         # children first: nginx's worker outlives its master
        elif self.alive():
            self.send(sig)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                note("%s did not stop within %.0fs of signal %d: killed"
                     % (self.name, timeout, sig))
                self.kill()
        return self.p.returncode

    def kill(self):
        """SIGKILL the process and its children (nginx's worker)."""
        for pid in children(self.pid) if self.alive() else []:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.alive():
            self.p.kill()
        try:
            self.p.wait(5)
        except subprocess.TimeoutExpired:
            pass


def cleanup_procs():
    for pr in procs:
        if pr.alive():
            pr.kill()


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, proc, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError("%s exited at start (status %s): %s" % (
                proc.name, proc.p.returncode, proc.tail()))
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError("%s: nothing listening on %d after %.0fs"
                       % (proc.name, port, timeout))


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def cpu_ns(pid):
    """CPU time used so far by a process and its children's threads, in ns
    (schedstat, summed over every thread)."""
    total = 0
    for p in [pid] + children(pid):
        try:
            tasks = os.listdir("/proc/%d/task" % p)
        except OSError:
            continue
        for t in tasks:
            try:
                with open("/proc/%d/task/%s/schedstat" % (p, t)) as f:
                    total += int(f.read().split()[0])
            except (OSError, ValueError, IndexError):
                pass
    return total


def render(head, rows):
    """A Markdown table: the first column left-aligned, the rest right."""
    widths = [max(len(r[i]) for r in [head] + rows) for i in range(len(head))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(head, widths)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    for r in rows:
        lines.append("| " + " | ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(r, widths))) + " |")
    return "\n".join(lines)


def children(pid):
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        kids = []
        for d in os.listdir("/proc"):
            if d.isdigit():
                try:
                    with open("/proc/%s/stat" % d) as f:
                        if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                            kids.append(int(d))
                except (OSError, IndexError, ValueError):
                    pass
        return kids


# ---------------------------------------------------------------- tools

class Env:
    def __init__(self, tmp):
        self.tmp = tmp
        self.graced = None
        self.hello = None
        self.hello_go = None
        self.wrk = shutil.which("wrk")
        self.nginx = shutil.which("nginx") or (
            "/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None)
        self.go = shutil.which("go") or (
            "/usr/local/go/bin/go" if os.access("/usr/local/go/bin/go", os.X_OK)
            else None)
        self.lua = None
        self.nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def install_missing(env):
    missing = [pkg for pkg, have in (("wrk", env.wrk), ("nginx-light", env.nginx))
               if not have]
    if not missing:
        return
    if os.environ.get("BENCH_INSTALL") == "1" and os.geteuid() == 0 \
            and shutil.which("apt-get"):
        log("installing " + " ".join(missing))
        aenv = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        cmd = ["apt-get", "install", "-y", "-q"] + missing
        if subprocess.run(cmd, env=aenv, stdout=subprocess.DEVNULL).returncode:
            subprocess.run(["apt-get", "update", "-q"], env=aenv,
                           stdout=subprocess.DEVNULL)
            subprocess.run(cmd, env=aenv, stdout=subprocess.DEVNULL)
        env.wrk = shutil.which("wrk")
        env.nginx = shutil.which("nginx") or (
            "/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None)
    for pkg, have in (("wrk", env.wrk), ("nginx-light", env.nginx)):
        if not have:
            note("%s not installed: its rows/column are skipped "
                 "(apt-get install -y %s, or BENCH_INSTALL=1 as root)"
                 % (pkg, pkg))


def find_graced():
    if os.environ.get("GRACED_BIN"):
        cands = [os.environ["GRACED_BIN"]]
    else:
        cands = [os.path.join(os.getcwd(), "src/graced"),
                 os.path.join(HERE, "..", "src", "graced")]
    for c in cands:
        if c and os.access(c, os.X_OK):
            return os.path.abspath(c)
    sys.exit("bench: graced not found at %s (build it with make, or set "
             "GRACED_BIN)" % " or ".join(cands))


def build_hello(env):
    out = os.path.join(env.tmp, "hello-evhttp")
    try:
        flags = subprocess.run(["pkg-config", "--cflags", "--libs", "libevent"],
                               check=True, capture_output=True,
                               text=True).stdout.split()
        subprocess.run([os.environ.get("CC", "cc"), "-O2", "-o", out,
                        os.path.join(HERE, "hello.c")] + flags, check=True)
        env.hello = out
    except (OSError, subprocess.CalledProcessError) as e:
        note("cannot build bench/hello.c (%s): evhttp column skipped" % e)


def build(env):
    env.graced = find_graced()
    build_hello(env)
    if env.go is None:
        note("no Go toolchain (go in PATH or /usr/local/go/bin/go): "
             "go column skipped")
    else:
        out = os.path.join(env.tmp, "hello-go")
        genv = dict(os.environ, GOTOOLCHAIN="local", CGO_ENABLED="0",
                    GOFLAGS="", GO111MODULE="off")
        if not genv.get("HOME") and not genv.get("GOCACHE"):
            genv["GOCACHE"] = os.path.join(env.tmp, "gocache")
        log("go build bench/hello.go")
        r = subprocess.run([env.go, "build", "-o", out,
                            os.path.join(HERE, "hello.go")],
                           cwd=env.tmp, env=genv)
        if r.returncode == 0:
            env.hello_go = out
        else:
            note("go build failed: go column skipped")
    env.lua = os.path.join(env.tmp, "post.lua")
    with open(env.lua, "w") as f:
        f.write('wrk.method = "POST"\n'
                'wrk.headers["Content-Type"] = "application/json"\n'
                "wrk.body = '%s'\n" % EVENT)


def have(env, name):
    return {"graced": env.graced, "evhttp": env.hello, "nginx": env.nginx,
            "go": env.hello_go}[name.replace("+log", "")] is not None


def start(env, name, drain_delay=0.0, extra=(), spool_dir=None):
    """Start one server on core 0: (Proc, port). graced's spool goes to a
    new directory under spool_dir (default: the run's temporary directory)."""
    if name == "graced+log":
        # Its defaults, as a user runs it with stderr sent to a file: the
        # serving line goes to that file, so the ports are chosen here.
        d = tempfile.mkdtemp(prefix="graced-", dir=env.tmp)
        port, admin = free_port(), free_port()
        pr = Proc(name, SERVER_CPU + [
            env.graced, "--workers", "1", "--listen", "127.0.0.1:%d" % port,
            "--admin-listen", "127.0.0.1:%d" % admin,
            "--spool", os.path.join(d, "spool.jsonl"),
            "--log-file", os.path.join(d, "access.log"),
            "--drain-delay", "0", "--shutdown-timeout", "20"])
        pr.access_log, pr.admin_port = os.path.join(d, "access.log"), admin
        wait_port(port, pr)
        return pr, port
    if name == "graced":
        d = tempfile.mkdtemp(prefix="graced-", dir=spool_dir or env.tmp)
        pr = Proc(name, SERVER_CPU + [
            env.graced, "--workers", "1", "--listen", "127.0.0.1:0",
            "--admin-listen", "127.0.0.1:0", "--spool", os.path.join(d, "spool.jsonl"),
            "--access-log", "off", "--drain-delay", str(drain_delay),
            "--shutdown-timeout", "20"] + list(extra))
        m = pr.wait_line(r'"event":"serving".*"listen":"127\.0\.0\.1:(\d+)"', 10)
        return pr, int(m.group(1))
    if name == "go":
        pr = Proc(name, SERVER_CPU + [
            env.hello_go, "-listen", "127.0.0.1:0", "-drain-delay",
            str(drain_delay), "-shutdown-timeout", "20"],
            env=dict(os.environ, GOMAXPROCS="1"))
        m = pr.wait_line(r'"event":"serving".*"listen":"127\.0\.0\.1:(\d+)"', 10)
        return pr, int(m.group(1))
    if name == "evhttp":
        pr = Proc(name, SERVER_CPU + [env.hello, "0"])
        m = pr.wait_line(r"listening (\d+)", 10)
        return pr, int(m.group(1))
    if name in ("nginx", "nginx+log"):
        d = tempfile.mkdtemp(prefix="nginx-", dir=env.tmp)
        port = free_port()
        with open(os.path.join(HERE, "nginx.conf")) as f:
            conf = f.read()
        # nginx's default access log: the combined format, one write(2)
        # per request, to a file.
        access = "@DIR@/access.log" if name == "nginx+log" else "off"
        conf = (conf.replace("@ACCESS_LOG@", access)
                .replace("@PORT@", str(port)).replace("@DIR@", d)
                .replace("@USER@", "user root root;" if os.geteuid() == 0 else "")
                .replace("@NOFILE@", str(env.nofile))
                .replace("@WORKER_CONNECTIONS@", str(max(1024, env.nofile - 100))))
        path = os.path.join(d, "nginx.conf")
        with open(path, "w") as f:
            f.write(conf)
        pr = Proc(name, SERVER_CPU + [env.nginx, "-p", d + "/", "-c", path,
                                      "-e", os.path.join(d, "error.log")])
        pr.access_log = os.path.join(d, "access.log")
        wait_port(port, pr)
        return pr, port
    raise ValueError(name)


# ---------------------------------------------------------------- HTTP client

def read_response(sock):
    """One response from a blocking socket: (status, headers, body, close).
    EOFError when the connection closes before a whole response."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise EOFError("connection closed after %d bytes" % len(buf))
        buf += chunk
    head, rest = buf.split(b"\r\n\r\n", 1)
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(b":")
        headers[k.strip().lower()] = v.strip()
    n = int(headers.get(b"content-length", b"0"))
    while len(rest) < n:
        chunk = sock.recv(65536)
        if not chunk:
            raise EOFError("connection closed inside the body")
        rest += chunk
    close = headers.get(b"connection", b"").lower() == b"close"
    return status, headers, rest[:n], close


def get_request(port, path="/healthz"):
    return ("GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % (path, port)).encode()


def sanity(name, port):
    """One GET /healthz and one POST /v1/events; raise unless both work.
    Returns the /healthz body."""
    with socket.create_connection(("127.0.0.1", port), 5) as s:
        s.sendall(get_request(port))
        st, _, health, _ = read_response(s)
        if st != 200 or not health.startswith(b'{"status":"ok"'):
            raise RuntimeError("%s: GET /healthz gave %d %r" % (name, st, health))
        s.sendall(("POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                   "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                   % (port, len(EVENT), EVENT)).encode())
        st, _, body, _ = read_response(s)
        if not 200 <= st < 300:
            raise RuntimeError("%s: POST /v1/events gave %d %r" % (name, st, body))
    return health


# ---------------------------------------------------------------- wrk rows

WRK_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def wrk(env, port, kind, seconds, pid=None):
    url = "http://127.0.0.1:%d%s" % (port, "/v1/events" if kind == "post" else "/healthz")
    cmd = CLIENT_CPU + [env.wrk, "--latency", "-t1", "-c%d" % WRK_CONNS,
                        "-d%ds" % seconds]
    if kind == "close":
        cmd += ["-H", "Connection: close"]
    if kind == "post":
        cmd += ["-s", env.lua]
    cmd.append(url)
    cpu0 = cpu_ns(pid) if pid else 0
    r = subprocess.run(cmd, capture_output=True, text=True,
                       timeout=seconds + 60)
    cpu1 = cpu_ns(pid) if pid else 0
    out = r.stdout
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if r.returncode != 0 or m is None:
        raise RuntimeError("wrk failed (%d): %s %s" % (r.returncode, out, r.stderr))
    res = {"rps": float(m.group(1)), "cpu": None}
    m = re.search(r"(\d+) requests in", out)
    if pid and m and int(m.group(1)) > 0 and cpu1 > cpu0:
        res["cpu"] = (cpu1 - cpu0) / 1000.0 / int(m.group(1))
    for pct, key in (("50", "p50"), ("99", "p99")):
        m = re.search(r"^\s+%s%%\s+([\d.]+)(us|ms|s|m)\s*$" % pct, out, re.M)
        res[key] = float(m.group(1)) * WRK_UNITS[m.group(2)] if m else None
    errs = []
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if m:
        errs.append("%s non-2xx" % m.group(1))
    m = re.search(r"Socket errors: (.*)", out)
    if m:
        errs.append("socket errors " + m.group(1).strip())
    res["errors"] = errs
    return res


# Which server runs in each column for each kind of wrk row: the access-log
# row puts graced and nginx with their logs on beside the same evhttp.
COLUMNS = {"access-log": {"graced": "graced+log", "evhttp": "evhttp",
                          "nginx": "nginx+log"}}


def log_lines(pr):
    """Lines in a server's access log file, and for graced the lines it
    dropped (graced_log_lines_dropped_total): a row that logs must log."""
    with open(pr.access_log, "rb") as f:
        lines = sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))
    dropped = None
    if getattr(pr, "admin_port", None):
        with socket.create_connection(("127.0.0.1", pr.admin_port), 5) as s:
            s.sendall(get_request(pr.admin_port, "/metrics"))
            m = re.search(rb"^graced_log_lines_dropped_total (\d+)",
                          read_response(s)[2], re.M)
            dropped = int(m.group(1)) if m else None
    return lines, dropped


def throughput_rows(env):
    kinds = [k for k in ("keep-alive", "close", "post", "access-log")
             if selected(k)]
    if not kinds:
        return
    if env.wrk is None:
        note("wrk missing: throughput rows skipped")
        return
    plain = [k for k in kinds if k not in COLUMNS]
    names = [n for n in SERVERS if have(env, n)] if plain else []
    for k in kinds:
        names += [n for n in COLUMNS.get(k, {}).values()
                  if n not in names and have(env, n)]
    servers = {}
    def up(n):
        # graced: drain delay 0 so the stop at the end is quick; the events
        # spool is in its own temporary directory.
        servers[n] = start(env, n)
        bodies[n] = len(sanity(n, servers[n][1]))
        return True

    try:
        names = [n for n in names if guard("%s start-up" % n, up, n)]
        for n in names:
            log("warm-up %s (1s)" % n)
            guard("%s warm-up" % n, wrk, env, servers[n][1], "keep-alive", 1)
        samples = {}
        for rnd in range(REPEAT):
            for kind in kinds:
                cols = COLUMNS.get(kind, {n: n for n in SERVERS})
                for col, n in cols.items():
                    if n not in servers:
                        continue
                    log("wrk %s %s %ds%s" % (kind, n, SECONDS,
                                              " (round %d)" % (rnd + 1) if REPEAT > 1 else ""))
                    # The access-log row is keep-alive GET /healthz.
                    res = guard("wrk %s %s" % (kind, n), wrk, env,
                                servers[n][1], "keep-alive" if kind in COLUMNS
                                else kind, SECONDS, servers[n][0].pid)
                    if res is None:
                        continue
                    if res["errors"]:
                        note("%s, %s: %s" % (kind, n, ", ".join(res["errors"])))
                    samples.setdefault((kind, col), []).append(res)
        # The median of the rounds, figure by figure (the project's rule:
        # one noisy round on a shared machine moves it little).
        prefix = {"keep-alive": "ka", "close": "cl", "post": "po",
                  "access-log": "lg"}
        for (kind, n), runs in samples.items():
            for what in ("rps", "p50", "p99", "cpu"):
                key = "%s_%s" % (prefix[kind], what)
                vals = [r[what] for r in runs if r[what] is not None]
                results[key][n] = statistics.median(vals) if vals else None
                results[key][n + "_all"] = [r[what] for r in runs]
        for n in ("graced+log", "nginx+log"):
            if n in servers:
                got = guard("%s log lines" % n, log_lines, servers[n][0])
                if got:
                    log_counts[n] = got
    finally:
        for n, (pr, _) in servers.items():
            pr.stop(signal.SIGTERM)


# ---------------------------------------------------------------- drain rows

def readiness_trial(env, name):
    """Time from kill(SIGTERM) to the arrival of the first 503, with one
    client looping GET /healthz on a keep-alive connection."""
    pr, port = start(env, name, drain_delay=0.5)
    sock = None
    try:
        sock = socket.create_connection(("127.0.0.1", port), 5)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        req = get_request(port)
        for _ in range(200):        # warm the connection and the server
            sock.sendall(req)
            st, _, _, close = read_response(sock)
            if st != 200 or close:
                raise RuntimeError("%s: healthz %d before the signal" % (name, st))
        t_kill = time.perf_counter()
        os.kill(pr.pid, signal.SIGTERM)
        lag = None
        for _ in range(100000):
            if time.perf_counter() - t_kill > 3:
                break
            if sock is None:
                sock = socket.create_connection(("127.0.0.1", port), 5)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            try:
                sock.sendall(req)
                st, _, _, close = read_response(sock)
            except (EOFError, ConnectionError) as e:
                note("%s readiness: connection lost without a response (%s)"
                     % (name, e))
                sock.close()
                sock = None
                continue
            if st == 503:
                lag = time.perf_counter() - t_kill
                break
            if close:
                sock.close()
                sock = None
        if lag is None:
            raise RuntimeError("%s: no 503 within 3 s of SIGTERM" % name)
        return lag * 1000.0
    finally:
        if sock is not None:
            sock.close()
        pr.stop(signal.SIGTERM)


def exit_lag_trial(env, name, spool_dir=None, settle=0.05):
    """One slow upload in flight through the drain; time from its response
    to the process's exit."""
    pr, port = start(env, name, drain_delay=0.2, spool_dir=spool_dir)
    sock = None
    try:
        body = EVENT.encode()
        half = len(body) // 2
        sock = socket.create_connection(("127.0.0.1", port), 5)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(("POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                      "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                      % (port, len(body))).encode() + body[:half])
        time.sleep(0.05)            # the server has read the headers
        mark = pr.mark()
        os.kill(pr.pid, signal.SIGTERM)
        pr.wait_line(r'"event":"drain_stop"', 5, mark)
        time.sleep(settle)
        sock.sendall(body[half:])
        st, _, rbody, _ = read_response(sock)
        t_resp = time.perf_counter()
        if st != 202:
            raise RuntimeError("%s: slow upload answered %d %r" % (name, st, rbody))
        rc = pr.p.wait(10)
        t_exit = time.perf_counter()
        if rc != 0:
            note("%s exit-lag: exit status %d" % (name, rc))
        return (t_exit - t_resp) * 1000.0
    finally:
        if sock is not None:
            sock.close()
        pr.stop(signal.SIGKILL)


def drain_rows(env):
    names = [n for n in ("graced", "go") if have(env, n)]

    def trials(what, count, fn, *args):
        vals = []
        for _ in range(count):
            v = guard(what, fn, *args)
            if v is None:
                return None
            vals.append(v)
        return vals

    def record(key, n, vals):
        if vals:
            results[key][n] = statistics.median(vals)
            results[key][n + "_all"] = vals

    if selected("drain readiness"):
        for n in names:
            log("readiness flip %s x%d" % (n, READINESS_TRIALS))
            record("ready", n, trials("%s readiness" % n, READINESS_TRIALS,
                                      readiness_trial, env, n))
    if selected("drain exit-lag"):
        # graced fsyncs its spool before it exits; on tmpfs that is free, so
        # the first row measures the loop and the second adds the disk.
        shm = None
        if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK):
            shm = tempfile.mkdtemp(prefix="graced-bench-", dir="/dev/shm")
        else:
            note("no writable /dev/shm: the exit-lag row's spool is on disk")
        try:
            for n in names:
                log("exit lag %s x%d" % (n, EXIT_LAG_TRIALS))
                record("exitlag", n, trials("%s exit lag" % n, EXIT_LAG_TRIALS,
                                            exit_lag_trial, env, n, shm))
            if "graced" in names:
                log("exit lag graced, spool on disk, x%d" % EXIT_LAG_TRIALS)
                record("exitlag_disk", "graced",
                       trials("graced exit lag (disk)", EXIT_LAG_TRIALS,
                              exit_lag_trial, env, "graced"))
        finally:
            if shm:
                shutil.rmtree(shm, ignore_errors=True)


# ---------------------------------------------------------------- spool sync

# POST /v1/events with the spool on the real disk, once per --spool-sync
# mode: what it costs that a 202 means "on stable storage" (batch: one
# fdatasync per loop iteration, shared by its requests) rather than
# "written" (none). /var/tmp, not /tmp or /dev/shm, which may be tmpfs.
SYNC_DIR = "/var/tmp"
SYNC_MODES = ("none", "batch")
SYNC_ROWS = [("spool-sync", "sy_%s_%s" % (mode, what),
              "POST /v1/events, --spool-sync %s, spool on disk%s" % (mode, label),
              unit)
             for mode in SYNC_MODES
             for what, label, unit in (("rps", ", 50 conns: requests/s", "rps"),
                                       ("p50", ": p50 latency", "ms"),
                                       ("p99", ": p99 latency", "ms"),
                                       ("cpu", ": server CPU per request", "us"))]
ROWS += SYNC_ROWS
results.update({key: {} for _, key, _, _ in SYNC_ROWS})


def scrape(port, names):
    """The values of these unlabelled-or-labelled samples on /metrics."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        c.request("GET", "/metrics")
        text = c.getresponse().read().decode()
    finally:
        c.close()
    vals = {}
    for line in text.splitlines():
        name, _, value = line.rpartition(" ")
        if name in names:
            vals[name] = float(value)
    return vals


def fs_type(path):
    """The type of the filesystem path is on, from the longest mount point
    that holds it."""
    best, kind = "", "?"
    with open("/proc/self/mounts") as f:
        for line in f:
            mnt, typ = line.split()[1:3]
            inside = path == mnt or path.startswith(mnt.rstrip("/") + "/")
            if inside and len(mnt) >= len(best):
                best, kind = mnt, typ
    return kind


def sync_ms(directory, n=200):
    """Median time of one 200-byte append and its fdatasync, in ms."""
    path = os.path.join(directory, "sync-probe")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    times = []
    try:
        for _ in range(n):
            t0 = time.perf_counter()
            os.write(fd, EVENT.encode())
            os.fdatasync(fd)
            times.append((time.perf_counter() - t0) * 1000.0)
    finally:
        os.close(fd)
        os.unlink(path)
    return statistics.median(times)


def spool_sync_one(env, mode, disk):
    pr, port = start(env, "graced", extra=("--spool-sync", mode), spool_dir=disk)
    try:
        log("warm-up graced --spool-sync %s (1s)" % mode)
        wrk(env, port, "post", 1)
        runs = []
        for rnd in range(REPEAT):
            log("wrk post graced --spool-sync %s %ds (round %d)"
                % (mode, SECONDS, rnd + 1))
            res = wrk(env, port, "post", SECONDS, pr.pid)
            if res["errors"]:
                note("spool-sync %s: %s" % (mode, ", ".join(res["errors"])))
            runs.append(res)
        best = max(runs, key=lambda r: r["rps"])
        for what in ("rps", "p50", "p99", "cpu"):
            results["sy_%s_%s" % (mode, what)]["graced"] = best[what]
        syncs, ok = "graced_spool_syncs_total", \
            'graced_requests_total{method="POST",path="/v1/events",code="202"}'
        vals = scrape(port, (syncs, ok))
        if vals.get(syncs):
            note("spool-sync %s: %d fdatasync for %d 202s, %.1f per sync"
                 % (mode, vals[syncs], vals.get(ok, 0),
                    vals.get(ok, 0) / vals[syncs]))
    finally:
        pr.stop(signal.SIGTERM)


def spool_sync_rows(env):
    if not selected("spool-sync"):
        return
    if env.wrk is None:
        note("wrk missing: spool-sync rows skipped")
        return
    disk = tempfile.mkdtemp(prefix="graced-bench-", dir=SYNC_DIR)
    try:
        note("spool-sync rows: spool in %s, filesystem %s; one 200 B "
             "write+fdatasync there takes %.3f ms (median of 200)"
             % (SYNC_DIR, fs_type(disk), sync_ms(disk)))
        for mode in SYNC_MODES:
            guard("spool-sync %s" % mode, spool_sync_one, env, mode, disk)
    finally:
        shutil.rmtree(disk, ignore_errors=True)


# ---------------------------------------------------------------- upgrade

# What clients see across an upgrade (SIGUSR2 to the supervisor), beside a
# steady window on the same process. graced runs with its defaults but
# --workers (the access log on, to a file in the temporary directory);
# a load process on core 1 keeps UPGRADE_KA keep-alive connections and
# UPGRADE_NEW one-request connections busy, closed loop, and times every
# request from its first byte (or its connect) to the end of the response.
UPGRADE_WORKERS = (1, 2)
UPGRADE_KA = 6
UPGRADE_NEW = 2
UPGRADE_WARMUP = 1.0        # s of load before the steady window
UPGRADE_STEADY = 3.0        # s of the steady window
UPGRADE_COUNT = 5           # upgrades per round
UPGRADE_EVERY = 2.0         # s from one SIGUSR2 to the next
UPGRADE_REQUEST_TIMEOUT = 5.0
KIND_KA, KIND_RECONNECT, KIND_NEW = 0, 1, 2
KIND_NAMES = {KIND_KA: "keep-alive, reused connection",
              KIND_RECONNECT: "keep-alive, reconnect after a close",
              KIND_NEW: "new connection per request"}
upgrade_results = {}        # --workers -> medians, timings, failures


class Slot:
    """One client of the load process: a keep-alive connection, or a
    connection per request (new_each)."""

    def __init__(self, new_each):
        self.new_each = new_each
        self.sock = None
        self.buf = b""
        self.t0 = None          # start of the request in progress (ns)
        self.kind = None
        self.connecting = False
        self.next_at = 0        # after a failure: not before (ns)


def upgrade_load(port, stop_fd, out):
    """The load process: one selectors loop, so that no lock or thread
    switch of this script's adds to a request's time. Runs until stop_fd is
    readable, then pickles every request's (start ns, latency ns or -1 for a
    failure, kind) and the failures' reasons to out."""
    sel = selectors.DefaultSelector()
    sel.register(stop_fd, selectors.EVENT_READ, None)
    head = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n" % port
    req_ka = (head + "\r\n").encode()
    req_new = (head + "Connection: close\r\n\r\n").encode()
    clen = re.compile(rb"\r\ncontent-length:[ \t]*(\d+)", re.I)
    cclose = re.compile(rb"\r\nconnection:[ \t]*close", re.I)
    starts, lats, kinds = array.array("q"), array.array("q"), array.array("b")
    reasons = {}
    slots = [Slot(False) for _ in range(UPGRADE_KA)] + \
            [Slot(True) for _ in range(UPGRADE_NEW)]
    timeout_ns = int(UPGRADE_REQUEST_TIMEOUT * 1e9)

    def close(sl):
        if sl.sock is not None:
            sel.unregister(sl.sock)
            sl.sock.close()
            sl.sock = None

    def fail(sl, why):
        starts.append(sl.t0)
        lats.append(-1)
        kinds.append(sl.kind)
        reasons[why] = reasons.get(why, 0) + 1
        close(sl)
        sl.t0 = None
        sl.next_at = time.monotonic_ns() + 10000000    # no busy loop

    def send(sl):
        try:
            sl.sock.send(req_new if sl.new_each else req_ka)
        except OSError as e:
            fail(sl, "send: " + (errno.errorcode.get(e.errno) or str(e)))

    def begin(sl):
        sl.t0 = time.monotonic_ns()
        sl.buf = b""
        if sl.sock is not None:
            sl.kind = KIND_KA
            send(sl)
            return
        sl.kind = KIND_NEW if sl.new_each else KIND_RECONNECT
        sl.sock = socket.socket()
        sl.sock.setblocking(False)
        sl.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        err = sl.sock.connect_ex(("127.0.0.1", port))
        sel.register(sl.sock, selectors.EVENT_WRITE, sl)
        sl.connecting = True
        if err not in (0, errno.EINPROGRESS):
            fail(sl, "connect: " + errno.errorcode.get(err, str(err)))

    def ready(sl):
        if sl.connecting:
            err = sl.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                fail(sl, "connect: " + errno.errorcode.get(err, str(err)))
                return
            sl.connecting = False
            sel.modify(sl.sock, selectors.EVENT_READ, sl)
            send(sl)
            return
        try:
            data = sl.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError as e:
            fail(sl, "recv: " + (errno.errorcode.get(e.errno) or str(e)))
            return
        if not data:
            fail(sl, "closed before the response" if not sl.buf
                 else "closed inside the response")
            return
        sl.buf += data
        end = sl.buf.find(b"\r\n\r\n")
        if end < 0:
            return
        m = clen.search(sl.buf, 0, end)
        if m is None or len(sl.buf) - end - 4 < int(m.group(1)):
            return
        t1 = time.monotonic_ns()
        status = int(sl.buf[9:12])
        if status != 200:
            fail(sl, "status %d" % status)
            return
        starts.append(sl.t0)
        lats.append(t1 - sl.t0)
        kinds.append(sl.kind)
        if sl.new_each or cclose.search(sl.buf, 0, end):
            close(sl)
        begin(sl)

    for sl in slots:
        begin(sl)
    running = True
    while running:
        for key, _ in sel.select(0.02):
            sl = key.data
            if sl is None:
                running = False
            elif key.fileobj is sl.sock and sl.t0 is not None:
                ready(sl)
        now = time.monotonic_ns()
        for sl in slots:
            if sl.t0 is None and now >= sl.next_at:
                begin(sl)
            elif sl.t0 is not None and now - sl.t0 > timeout_ns:
                fail(sl, "no response within %.0fs" % UPGRADE_REQUEST_TIMEOUT)
    for sl in slots:
        close(sl)
    with open(out, "wb") as f:
        pickle.dump({"starts": starts, "lats": lats, "kinds": kinds,
                     "reasons": reasons}, f)


class LogFollower:
    """Reads a log file as it grows, from where the last read stopped, and
    notes when each event line was seen (time.monotonic_ns). The access
    log lines are skipped without parsing."""

    def __init__(self, path, proc):
        self.path, self.proc = path, proc
        self.pos, self.part = 0, b""
        self.pending = []       # read, not yet looked at by until()
        self.broken = 0         # lines that were not one JSON object

    def events(self):
        try:
            with open(self.path, "rb") as f:
                f.seek(self.pos)
                data = f.read()
        except FileNotFoundError:
            return []
        self.pos += len(data)
        lines = (self.part + data).split(b"\n")
        self.part = lines.pop()
        now = time.monotonic_ns()
        out = []
        for line in filter(None, lines):
            # Two generations share the file. A line split by the other
            # one's write would leave pieces of two lines on one line of
            # the file (log.c writes a batch in one call so that it does
            # not happen): keep every whole object in it, and count it.
            pieces = line.split(b'{"ts":')
            if len(pieces) != 2 or pieces[0]:
                self.broken += 1
            for piece in pieces[1:]:
                if b'"event":"request"' in piece:
                    continue
                try:
                    out.append((now, json.loads(b'{"ts":' + piece)))
                except ValueError:
                    pass
        return out

    def until(self, match, timeout):
        """Poll every 2 ms until match(event) is true: (ns, event). With
        match None, poll for timeout seconds (the steady window polls as an
        upgrade window does) and return None. An upgrade_failed or
        upgrade_refused line is an error."""
        deadline = time.monotonic() + timeout
        while True:
            self.pending += self.events()
            while self.pending:
                t, ev = self.pending.pop(0)
                if ev.get("event") in ("upgrade_failed", "upgrade_refused"):
                    raise RuntimeError("graced: %s" % json.dumps(ev))
                if match is not None and match(ev):
                    return t, ev
            if time.monotonic() > deadline:
                if match is None:
                    return None
                raise RuntimeError("graced: no awaited log line within %.0fs; "
                                   "last lines:\n%s" % (timeout, self.tail()))
            if not self.proc.alive():
                raise RuntimeError("graced exited (status %s)"
                                   % self.proc.p.returncode)
            time.sleep(0.002)

    def tail(self, n=5):
        with open(self.path, "rb") as f:
            lines = [l for l in f.read().decode("utf-8", "replace").splitlines()
                     if '"event":"request"' not in l]
        return "\n".join(lines[-n:])


def lat_stats(recs, seconds=None):
    """n, requests/s, p50, p99, max (ms, nearest rank) and failures of a
    list of (start ns, latency ns or -1, kind)."""
    ok = sorted(r[1] for r in recs if r[1] >= 0)
    res = {"n": len(recs), "failed": len(recs) - len(ok), "rps": None}
    if seconds:
        res["rps"] = len(recs) / seconds
    for q, key in ((0.5, "p50"), (0.99, "p99"), (1.0, "max")):
        res[key] = ok[max(0, math.ceil(q * len(ok)) - 1)] / 1e6 if ok else None
    return res


def upgrade_round(env, workers):
    """One graced, a steady window, then UPGRADE_COUNT upgrades: the
    figures of each window, and the upgrades' timings."""
    d = tempfile.mkdtemp(prefix="graced-", dir=env.tmp)
    port, admin = free_port(), free_port()
    logfile = os.path.join(d, "graced.log")
    pr = Proc("graced-upgrade", SERVER_CPU + [
        env.graced, "--workers", str(workers),
        "--listen", "127.0.0.1:%d" % port,
        "--admin-listen", "127.0.0.1:%d" % admin,
        "--spool", os.path.join(d, "spool.jsonl"), "--log-file", logfile])
    follow = LogFollower(logfile, pr)
    out = os.path.join(d, "load.pickle")
    stop_r, stop_w = os.pipe()
    load = None
    try:
        follow.until(lambda ev: ev.get("event") == "serving", 10)
        sanity("graced", port)
        load = multiprocessing.get_context("fork").Process(
            target=upgrade_load, args=(port, stop_r, out))
        load.start()
        os.close(stop_r)
        stop_r = None
        follow.until(None, UPGRADE_WARMUP)
        t_steady = time.monotonic_ns()
        follow.until(None, UPGRADE_STEADY)
        steady = (t_steady, time.monotonic_ns())
        ups = []
        t_next = time.monotonic()
        for i in range(UPGRADE_COUNT):
            time.sleep(max(0.0, t_next - time.monotonic()))
            t_next = time.monotonic() + UPGRADE_EVERY
            t_sig = time.monotonic_ns()
            os.kill(pr.pid, signal.SIGUSR2)
            t_serving, _ = follow.until(
                lambda ev: ev.get("event") == "serving", 40)
            t_ready, ready = follow.until(
                lambda ev: ev.get("event") == "upgrade_ready", 40)
            old = ready["old_pid"]
            t_exit, _ = follow.until(
                lambda ev: ev.get("event") == "generation_exit"
                and ev.get("pid") == old, 40)
            ups.append((t_sig, t_serving, t_ready, t_exit))
            log("upgrade %d/%d (--workers %d): new generation serving after "
                "%.1f ms, upgrade_ready %.1f ms, old generation gone %.1f ms "
                "after the signal" % (i + 1, UPGRADE_COUNT, workers,
                                      (t_serving - t_sig) / 1e6,
                                      (t_ready - t_sig) / 1e6,
                                      (t_exit - t_sig) / 1e6))
        # The last window's late requests: give them the request timeout.
        follow.until(None, 0.5)
        os.write(stop_w, b"x")
        load.join(UPGRADE_REQUEST_TIMEOUT + 10)
        if load.exitcode != 0:
            raise RuntimeError("the load process ended with status %s"
                               % load.exitcode)
        with open(out, "rb") as f:
            got = pickle.load(f)
    finally:
        for fd in (stop_r, stop_w):
            if fd is not None:
                os.close(fd)
        if load is not None and load.is_alive():
            load.kill()
            load.join(5)
        pr.stop(signal.SIGQUIT)
    recs = sorted(zip(got["starts"], got["lats"], got["kinds"]))

    def within(windows, kind=None):
        sel, secs = [], 0.0
        for a, b in windows:
            i = bisect.bisect_left(recs, (a,))
            j = bisect.bisect_left(recs, (b,))
            sel += [r for r in recs[i:j] if kind is None or r[2] == kind]
            secs += (b - a) / 1e9
        return lat_stats(sel, secs)

    upgrade = [(u[0], u[3]) for u in ups]
    figs = {"steady": within([steady]), "upgrade": within(upgrade)}
    for k in KIND_NAMES:
        figs["steady", k] = within([steady], k)
        figs["upgrade", k] = within(upgrade, k)
    figs["start"] = within([(u[0], u[1]) for u in ups])
    figs["probation"] = within([(u[1], u[2]) for u in ups])
    figs["handover"] = within([(u[2], u[3]) for u in ups])
    timings = {"start": [(u[1] - u[0]) / 1e6 for u in ups],
               "ready": [(u[2] - u[0]) / 1e6 for u in ups],
               "exit": [(u[3] - u[2]) / 1e6 for u in ups]}
    return {"figs": figs, "timings": timings, "reasons": got["reasons"],
            "broken": follow.broken}


def upgrade_rows(env):
    if not selected("upgrade"):
        return
    rounds = {w: [] for w in UPGRADE_WORKERS}
    for rnd in range(REPEAT):
        for w in UPGRADE_WORKERS:
            log("upgrade --workers %d: %.0fs steady, %d upgrades (round %d)"
                % (w, UPGRADE_STEADY, UPGRADE_COUNT, rnd + 1))
            res = guard("upgrade --workers %d" % w, upgrade_round, env, w)
            if res is not None:
                rounds[w].append(res)
    for w, runs in rounds.items():
        if not runs:
            continue
        med = {}
        for name in runs[0]["figs"]:
            med[name] = {}
            for what in ("n", "rps", "p50", "p99", "max"):
                vals = [r["figs"][name][what] for r in runs
                        if r["figs"][name][what] is not None]
                med[name][what] = statistics.median(vals) if vals else None
            # Failures are summed, not a median: one failed request in one
            # round is one too many.
            med[name]["failed"] = sum(r["figs"][name]["failed"] for r in runs)
        timings = {k: statistics.median(t for r in runs for t in r["timings"][k])
                   for k in runs[0]["timings"]}
        reasons = {}
        for r in runs:
            for why, c in r["reasons"].items():
                reasons[why] = reasons.get(why, 0) + c
        upgrade_results[w] = {"median": med, "timings": timings,
                              "reasons": reasons, "rounds": len(runs),
                              "all": [r["figs"] for r in runs]}
        failed = med["steady"]["failed"] + med["upgrade"]["failed"]
        broken = sum(r["broken"] for r in runs)
        if broken:
            note("upgrade --workers %d: %d lines of graced's log file were "
                 "not one whole JSON object (two processes' writes "
                 "interleaved)" % (w, broken))
        if reasons:
            note("upgrade --workers %d: failed requests: %s" % (w, ", ".join(
                "%d %s" % (c, why) for why, c in sorted(reasons.items()))))
        if failed:
            failures.append("upgrade --workers %d: %d failed requests"
                            % (w, failed))


def upgrade_table(w):
    """The figures for one --workers: steady beside the upgrade windows, then
    the requests by kind and by phase of the upgrade."""
    u = upgrade_results[w]
    med, rounds = u["median"], u["rounds"]

    def cell(v, what):
        if v is None:
            return "-"
        if what in ("n", "failed"):
            return "{:,.0f}".format(v)
        if what == "rps":
            return "{:,.0f}".format(v)
        return "%.3f" % v if v < 10 else "%.1f" % v

    rows = []
    for what, label in (("rps", "requests/s"), ("p50", "p50 latency (ms)"),
                        ("p99", "p99 latency (ms)"), ("max", "max latency (ms)"),
                        ("failed", "failed requests, sum of %d rounds" % rounds)):
        s, g = med["steady"][what], med["upgrade"][what]
        ratio = "-" if what == "failed" or not s or g is None else "%.2f" % (g / s)
        rows.append([label, cell(s, what), cell(g, what), ratio])
    out = [render(["--workers %d" % w, "steady", "upgrade windows",
                   "upgrade/steady"], rows), ""]
    rows = []
    for name, label in [(("steady", k), "steady: " + v) for k, v in KIND_NAMES.items()] + \
                       [(("upgrade", k), "upgrade: " + v) for k, v in KIND_NAMES.items()] + \
                       [("start", "upgrade, signal to new generation serving"),
                        ("probation", "upgrade, probation (both generations accept)"),
                        ("handover", "upgrade, handover to old generation's exit")]:
        f = med[name]
        rows.append([label] + [cell(f[x], x) for x in
                               ("n", "p50", "p99", "max", "failed")])
    out.append(render(["--workers %d: requests started in" % w, "requests",
                       "p50 ms", "p99 ms", "max ms", "failed"], rows))
    t = u["timings"]
    out.append("--workers %d, medians of %d upgrades: new generation serving "
               "%.1f ms after the signal, upgrade_ready %.1f ms after it, "
               "old generation's exit %.1f ms after upgrade_ready"
               % (w, rounds * UPGRADE_COUNT, t["start"], t["ready"], t["exit"]))
    return "\n".join(out)


# ---------------------------------------------------------------- 10,000 idle

def open_idle(port, n, batch=100):
    """n keep-alive connections, one GET /healthz each, left open."""
    socks = []
    req = get_request(port)
    try:
        while len(socks) < n:
            group = []
            for _ in range(min(batch, n - len(socks))):
                s = socket.socket()
                socks.append(s)
                s.settimeout(10)
                s.connect(("127.0.0.1", port))
                s.sendall(req)
                group.append(s)
            for s in group:
                st, _, _, close = read_response(s)
                if st != 200 or close:
                    raise RuntimeError("idle connection got %d%s" % (
                        st, ", close" if close else ""))
    except BaseException:
        close_all(socks)
        raise
    return socks


def close_all(socks):
    for s in socks:
        try:
            # RST: no TIME_WAIT left behind on 10,000 client ports.
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
            s.close()
        except OSError:
            pass


def tree_rss(pid):
    return rss_kib(pid) + sum(rss_kib(k) for k in children(pid))


def idle_rows(env, nconns):
    want_close = selected("drain idle-close")
    want_mem = selected("memory")
    if not (want_close or want_mem):
        return
    names = [n for n in SERVERS if have(env, n)
             and (want_mem or n in ("graced", "go"))]
    for n in names:
        guard("%s idle connections" % n, idle_one, env, n, nconns,
              want_mem, want_close)


def idle_one(env, n, nconns, want_mem, want_close):
    """10,000 idle keep-alive connections on one server: RSS before and
    after, then (graced, Go) the time from SIGTERM to exit."""
    extra = ("--max-connections", str(nconns * 2)) if n == "graced" else ()
    pr, port = start(env, n, drain_delay=0.0, extra=extra)
    socks = []
    try:
        sanity(n, port)
        time.sleep(0.2)
        before = tree_rss(pr.pid)
        log("%s: opening %d idle keep-alive connections" % (n, nconns))
        socks = open_idle(port, nconns)
        time.sleep(0.5)
        after = tree_rss(pr.pid)
        if want_mem:
            results["rss"][n] = (after - before) / nconns
            results["rss"][n + "_kib"] = [before, after]
        if want_close and n in ("graced", "go"):
            t0 = time.perf_counter()
            os.kill(pr.pid, signal.SIGTERM)
            rc = pr.p.wait(30)
            results["idleclose"][n] = (time.perf_counter() - t0) * 1000.0
            if rc != 0:
                note("%s idle-close: exit status %d" % (n, rc))
            # Every idle connection was closed by the server: FIN, not RST.
            eof = 0
            for s in socks[:: max(1, nconns // 100)]:
                try:
                    s.settimeout(2)
                    if s.recv(1) == b"":
                        eof += 1
                except OSError:
                    pass
            sampled = len(socks[:: max(1, nconns // 100)])
            if eof != sampled:
                note("%s idle-close: %d of %d sampled connections saw a "
                     "clean EOF" % (n, eof, sampled))
    finally:
        pr.stop(signal.SIGTERM)
        close_all(socks)


# ---------------------------------------------------------------- table

def fmt(v, unit):
    if v is None:
        return "-"
    if unit == "rps":
        return "{:,.0f}".format(v)
    if unit == "KiB":
        return "%.2f" % v
    if unit == "us":
        return "%.1f" % v
    if v < 10:
        return "%.3f" % v
    return "%.1f" % v


def table(nconns):
    head = ["metric", "graced", "evhttp", "nginx", "go", "graced/evhttp",
            "graced/nginx", "graced/go", "target", "result"]
    out = []
    for group, key, label, unit in ROWS:
        vals = results[key]
        if not any(vals.get(n) is not None for n in SERVERS):
            continue
        label = label.replace("N ", "{:,} ".format(nconns))
        cells = ["%s (%s)" % (label, {"rps": "req/s"}.get(unit, unit))]
        cells += [fmt(vals.get(n), unit) for n in SERVERS]
        for other in ("evhttp", "nginx", "go"):
            r = _ratio(vals, "graced", other)
            cells.append("-" if r is None else "%.2f" % r)
        tg, rs = [], []
        for what, test in TARGETS.get(key, []):
            ok = test(vals)
            tg.append(what)
            rs.append("n/a" if ok is None else ("PASS" if ok else "MISS"))
        cells += ["; ".join(tg), ", ".join(rs)]
        out.append(cells)
    return render(head, out)


def versions(env):
    def cmd(argv):
        try:
            r = subprocess.run(argv, capture_output=True, text=True, timeout=20)
            return (r.stdout + r.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return "?"
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    v = ["%s, %d CPUs, Linux %s" % (model, os.cpu_count(), os.uname().release),
         "libevent " + cmd(["pkg-config", "--modversion", "libevent"])]
    if env.nginx:
        v.append(cmd([env.nginx, "-v"]).replace("nginx version: ", ""))
    if env.hello_go:
        v.append(cmd([env.go, "version"]).replace("go version ", ""))
    if env.wrk:
        v.append(cmd([env.wrk, "-v"]).split(" [")[0])
    return "; ".join(v)


# ---------------------------------------------------------------- profile

def callgrind_run(env, name, vg, out):
    """Serve PROFILE_REQUESTS keep-alive GET /healthz under callgrind,
    counting only inside the event loop (no start-up, no exit)."""
    argv = [vg, "--tool=callgrind", "--callgrind-out-file=" + out,
            "--toggle-collect=event_base_loop"]
    if name == "graced":
        d = tempfile.mkdtemp(prefix="graced-", dir=env.tmp)
        pr = Proc(name, argv + [env.graced, "--workers", "1",
                                "--listen", "127.0.0.1:0",
                                "--admin-listen", "127.0.0.1:0", "--spool",
                                os.path.join(d, "spool.jsonl"), "--access-log",
                                "off", "--drain-delay", "0"])
        m = pr.wait_line(r'"event":"serving".*"listen":"127\.0\.0\.1:(\d+)"', 60)
    else:
        pr = Proc(name, argv + [env.hello, "0"])
        m = pr.wait_line(r"listening (\d+)", 60)
    port = int(m.group(1))
    log("%s: %d keep-alive GET /healthz under callgrind" % (name, PROFILE_REQUESTS))
    try:
        with socket.create_connection(("127.0.0.1", port), 30) as s:
            req = get_request(port)
            for _ in range(PROFILE_REQUESTS):
                s.sendall(req)
                st, _, _, _ = read_response(s)
                if st != 200:
                    raise RuntimeError("%s: healthz %d under callgrind" % (name, st))
    finally:
        pr.stop(signal.SIGTERM, timeout=60)


def annotate(ann, out, inclusive):
    """(total, [(instructions, function)]) from callgrind_annotate."""
    r = subprocess.run([ann, "--inclusive=" + inclusive, "--threshold=100",
                        "--auto=no", out], capture_output=True, text=True)
    total, rows = 0, []
    for line in r.stdout.splitlines():
        m = re.match(r"^\s*([\d,]+)(?: \(\s*[\d.]+%\))?\s+(.*)$", line)
        if not m:
            continue
        n = int(m.group(1).replace(",", ""))
        if "PROGRAM TOTALS" in m.group(2):
            total = n
        elif n > 0:
            rows.append((n, m.group(2)))
    return total, rows


def syscalls_per_request(env, name, strace, n=4000, conns=4):
    """strace -c over n keep-alive GET /healthz on a few connections:
    {syscall: calls per request}."""
    pr, port = start(env, name)
    out = os.path.join(env.tmp, "strace.%s" % name)
    st = None
    try:
        argv = [strace, "-f", "-c", "-o", out]
        for p in [pr.pid] + children(pr.pid):    # nginx: master and worker
            argv += ["-p", str(p)]
        st = subprocess.Popen(argv, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
        time.sleep(1.0)             # strace attaches to every thread
        socks = [socket.create_connection(("127.0.0.1", port), 10)
                 for _ in range(conns)]
        req = get_request(port)
        for _ in range(n // conns):
            for s in socks:
                s.sendall(req)
            for s in socks:
                read_response(s)
        for s in socks:
            s.close()
        time.sleep(0.3)
    finally:
        if st is not None:
            st.send_signal(signal.SIGINT)
            try:
                st.wait(10)
            except subprocess.TimeoutExpired:
                st.kill()
        pr.stop(signal.SIGTERM)
    calls = {}
    with open(out) as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 5 and parts[0][0].isdigit() and parts[-1] != "total":
                calls[parts[-1]] = int(parts[3]) / n
    return calls


def profile(env):
    vg = shutil.which("valgrind")
    ann = shutil.which("callgrind_annotate")
    if vg is None or ann is None:
        sys.exit("bench: valgrind not found (apt-get install -y valgrind)")
    build_hello(env)
    per_req = {}
    outs = {}
    for name in ("graced", "evhttp"):
        if name == "evhttp" and env.hello is None:
            continue
        outs[name] = os.path.join(env.tmp, "callgrind.%s" % name)
        callgrind_run(env, name, vg, outs[name])
        per_req[name] = annotate(ann, outs[name], "no")[0] / PROFILE_REQUESTS
    if os.environ.get("BENCH_PROFILE_OUT"):
        shutil.copy(outs["graced"], os.environ["BENCH_PROFILE_OUT"])
        log("callgrind output kept in " + os.environ["BENCH_PROFILE_OUT"])
    print("\n== instructions per keep-alive GET /healthz (callgrind, "
          "inside event_base_loop, %d requests) ==" % PROFILE_REQUESTS)
    for name, v in per_req.items():
        print("%-8s %8.0f" % (name, v))
    total, rows = annotate(ann, outs["graced"], "no")
    by_obj = {}
    for c, fn in rows:
        m = re.search(r"\[([^\]]+)\]\s*$", fn)
        obj = os.path.basename(m.group(1)) if m else "libc (inlined)"
        obj = re.sub(r"\.so[.\d]*$", "", obj)
        by_obj[obj] = by_obj.get(obj, 0) + c
    print("\n== graced: self instructions by object ==")
    for obj, c in sorted(by_obj.items(), key=lambda x: -x[1]):
        if c / total >= 0.005:
            print("%6.1f%%  %s" % (100.0 * c / total, obj))
    print("\n== graced: top functions, self ==")
    for c, fn in rows[:25]:
        print("%6.1f%%  %s" % (100.0 * c / total, fn[:130]))
    print("\n== graced: top functions, inclusive ==")
    for c, fn in annotate(ann, outs["graced"], "yes")[1][:40]:
        print("%6.1f%%  %s" % (100.0 * c / total, fn[:130]))
    strace = shutil.which("strace")
    if strace is None:
        print("\n(strace not installed: no system call counts)")
        return
    counts = {}
    for name in ("graced", "evhttp", "nginx"):
        if have(env, name):
            counts[name] = guard("%s strace" % name, syscalls_per_request,
                                 env, name, strace) or {}
    names = sorted({k for c in counts.values() for k in c},
                   key=lambda k: -max(c.get(k, 0) for c in counts.values()))
    print("\n== system calls per keep-alive GET /healthz (strace -c, 4 "
          "connections) ==")
    print("%-14s" % "syscall" + "".join("%10s" % n for n in counts))
    for k in names:
        if max(c.get(k, 0) for c in counts.values()) >= 0.01:
            print("%-14s" % k + "".join("%10.2f" % counts[n].get(k, 0)
                                        for n in counts))
    print("%-14s" % "total" + "".join("%10.2f" % sum(counts[n].values())
                                      for n in counts))


# ---------------------------------------------------------------- main

def main():
    global CLIENT_CPU, SERVER_CPU, TMP
    if os.cpu_count() and os.cpu_count() >= 2 and shutil.which("taskset"):
        SERVER_CPU = ["taskset", "-c", "0"]
        CLIENT_CPU = ["taskset", "-c", "1"]
        os.sched_setaffinity(0, {1})        # this script is a client too
    else:
        SERVER_CPU, CLIENT_CPU = [], []
        note("fewer than 2 CPUs or no taskset: servers and clients share CPUs")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGHUP, lambda *_: sys.exit(129))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 65536 if hard == resource.RLIM_INFINITY else min(hard, 65536)
    if soft < want:
        # Inherited by every server started from here (graced, nginx's
        # master and worker, Go) as well as used by this script's clients.
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    nconns = min(WANT_CONNS, nofile - 200)
    if nconns < WANT_CONNS:
        note("descriptor limit %d: idle rows use %d connections, not %d"
             % (nofile, nconns, WANT_CONNS))

    tmp = TMP = tempfile.mkdtemp(prefix="graced-bench-")
    t_start = time.monotonic()
    try:
        env = Env(tmp)
        if os.environ.get("BENCH_PROFILE") == "1":
            env.graced = find_graced()
            profile(env)
            return 0
        env.graced = find_graced()
        load0 = os.getloadavg()[0]
        if load0 > 1.0:
            note("load average %.1f before the run: the machine is busy, "
                 "expect noisy figures" % load0)
        install_missing(env)
        build(env)
        throughput_rows(env)
        drain_rows(env)
        spool_sync_rows(env)
        upgrade_rows(env)
        idle_rows(env, nconns)
        print()
        print("graced %s; servers pinned to core 0, clients (wrk -t1 -c%d "
              "-d%ds --latency, Python) to core 1; graced --workers 1 --access-log off, "
              "nginx access_log off, Go GOMAXPROCS=1 (access-log rows: graced "
              "--workers 1 with its defaults and --log-file, nginx access_log to a "
              "file); wrk rows: median of %d round(s)"
              % (env.graced, WRK_CONNS, SECONDS, REPEAT))
        print(versions(env))
        print("load average (1 min) %.2f at the start, %.2f at the end"
              % (load0, os.getloadavg()[0]))
        print()
        if any(v for v in results.values()):
            print(table(nconns))
            print()
        if upgrade_results:
            print("upgrade rows: graced with its defaults but --workers, "
                  "--log-file (access log on); the load process on core 1 "
                  "keeps %d keep-alive and %d new-connection GET /healthz "
                  "clients busy; each round %.0f s steady, then %d upgrades "
                  "(SIGUSR2) %.0f s apart, each window from the signal to the "
                  "old generation's generation_exit line; medians of %d "
                  "round(s), failures summed"
                  % (UPGRADE_KA, UPGRADE_NEW, UPGRADE_STEADY, UPGRADE_COUNT,
                     UPGRADE_EVERY, REPEAT))
            print()
            for w in sorted(upgrade_results):
                print(upgrade_table(w))
                print()
        if bodies:
            print("GET /healthz body (bytes): " + ", ".join(
                "%s %d" % (n, bodies[n]) for n in sorted(bodies)))
        for n, (lines, dropped) in sorted(log_counts.items()):
            print("%s: %d lines in its access log file%s" % (
                n, lines, "" if dropped is None else
                ", %d dropped (graced_log_lines_dropped_total)" % dropped))
        for key, what in (("ready", "readiness"), ("exitlag", "exit lag"),
                          ("exitlag_disk", "exit lag, disk")):
            for n in ("graced", "go"):
                vals = results[key].get(n + "_all")
                if vals:
                    print("%s %s trials (ms): min %.3f, median %.3f, max %.3f"
                          % (n, what, min(vals), statistics.median(vals), max(vals)))
        for key, what in (("rss", "RSS"),):
            for n in SERVERS:
                kib = results[key].get(n + "_kib")
                if kib:
                    print("%s %s before/after (KiB): %d / %d" % (n, what, kib[0], kib[1]))
        print()
        print("Ratios are graced divided by the other server: above 1 is better "
              "for req/s, below 1 is better for latency, time and memory.")
        for n in notes:
            print("note: " + n)
        print("total bench time %.0fs" % (time.monotonic() - t_start))
        if failures:
            print("FAILED: " + ", ".join(failures))
        if os.environ.get("BENCH_JSON"):
            with open(os.environ["BENCH_JSON"], "w") as f:
                json.dump({"results": results, "notes": notes,
                           "upgrade": {w: {"median": {"/".join(map(str, k))
                                                      if isinstance(k, tuple) else k: v
                                                      for k, v in u["median"].items()},
                                           "timings": u["timings"],
                                           "reasons": u["reasons"]}
                                       for w, u in upgrade_results.items()},
                           "seconds": SECONDS, "repeat": REPEAT,
                           "conns": nconns, "failures": failures}, f, indent=1)
        return 1 if failures else 0
    finally:
        cleanup_procs()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
