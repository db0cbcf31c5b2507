#!/usr/bin/env python3
"""graced's benchmark suite: graced against a plain evhttp server, nginx and
Go's net/http, side by side in one table. See bench/README.md.

    make bench                     # or: GRACED_BIN=src/graced python3 bench/run.py

Environment:
    GRACED_BIN      the daemon (default: ./src/graced, then ../src/graced
                    next to this script)
    BENCH_SECONDS   wrk duration per measurement (default 5)
    BENCH_REPEAT    rounds of the wrk rows, the median reported (default 3)
    BENCH_ONLY      comma-separated substrings: run only the rows whose group
                    or label contains one (e.g. keep-alive, post, access-log,
                    drain, spool-sync, memory)
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

import http.client
import json
import os
import re
import resource
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
    labels = [g for g, _, _, _ in ROWS if g == group]
    labels += [lbl for g, _, lbl, _ in ROWS if g == group]
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
    widths = [max(len(r[i]) for r in [head] + out) for i in range(len(head))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(head, widths)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    for r in out:
        lines.append("| " + " | ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(r, widths))) + " |")
    return "\n".join(lines)


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
        print(table(nconns))
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
                           "seconds": SECONDS, "repeat": REPEAT,
                           "conns": nconns, "failures": failures}, f, indent=1)
        return 1 if failures else 0
    finally:
        cleanup_procs()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
