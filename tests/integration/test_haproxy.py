"""Rolling restart behind a real load balancer (DESIGN.md, "What no request
dropped means, measured"): HAProxy in front of two graced instances, HTTP
health checks on /healthz every 100 ms, a continuous load of POST /v1/events
and GET /livez through HAProxy, and each instance restarted in turn (SIGTERM,
exit 0, start again on the same port and spool, back UP in HAProxy) while the
load runs. It must end with zero failed requests and every 202 event in the
spools exactly once. Each restart also carries one upload pinned to the
instance being restarted (HAProxy `use-server` on a test header), whose body
is finished only after every listener of that instance has closed: it must
be answered 202 by that instance and be in its spool.

What is asserted, per case: zero failed requests of any kind (reset, EOF
without a response, timeout, any 5xx including HAProxy's own, any wrong
answer); every 202 event in the union of the two spools exactly once and
nothing else there; each instance exits 0 with nothing cut off; HAProxy
marked each instance DOWN before its listener closed, never had to retry,
redispatch or count a response error, and sent load to every restarted
instance; load kept being served during every restart.

HAProxy choices (see HAPROXY_CFG):
- The server side is run in both of HAProxy's modes. `http-keep-alive` (the
  default of HAProxy 2.x, with `http-reuse safe`) reuses idle server
  connections, so it exercises graced's "Connection: close while draining"
  and its closing of idle keep-alive connections at STOPPING, where a race
  with a request in transit would show as an EOF. `http-server-close` opens
  one server connection per request, so it exercises the accept path and the
  listener closing while connections are being made. The client side is
  keep-alive in both.
- `retries 3` + `option redispatch` as in a real deployment. HAProxy retries
  only connection failures (`retry-on` left at its default, conn-failure):
  a request that reached a server is never sent again, so a request graced
  drops still reaches the client as an error. No L7 retry is enabled. Its
  per-server counters must stay zero all the same: connection errors,
  retries and redispatches (HAProxy takes an instance out before its
  listener closes, so there is nothing to retry: the retries hid nothing),
  and response errors (eresp: a server closing without a response, counted
  even when no client would see it).
- `inter 100ms fall 2 rise 2`, `timeout check 1s`: a draining instance is
  out within ~0.3 s, well inside its --drain-delay of 1 s; fall 2 and a 1 s
  check timeout keep a slow check on this busy machine from taking the one
  serving instance out while the other is restarting.
- `nbthread 1`, no chroot or user switch, foreground (`-db`), logs on
  stdout with `option dontlog-normal` (only abnormal requests are logged:
  they are the diagnostics when something fails); server UP/DOWN changes are
  followed on its output as events.
"""
import collections
import http.client
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid

from harness import Graced, SkipTest, recv_response, run, TIMEOUT

HOST = "127.0.0.1"
NTHREADS = 6
DRAIN_DELAY = "1"
REQ_TIMEOUT = 10.0      # a request that takes longer is a failed request

HAPROXY_CFG = """\
global
    nbthread 1
    stats socket {sock} mode 600 level admin
    log stdout format raw local0

defaults
    mode http
    log global
    option httplog
    option dontlog-normal
    option {server_mode}
    timeout connect 1s
    timeout client 10s
    timeout server 10s
    timeout check 1s
    retries 3
    option redispatch

frontend fe
    bind 127.0.0.1:{fe_port}
    default_backend be

backend be
    balance roundrobin
    # The test's pinned uploads only; ignored while the server is DOWN.
    use-server g0 if {{ req.hdr(x-pin) -m str g0 }}
    use-server g1 if {{ req.hdr(x-pin) -m str g1 }}
    option httpchk GET /healthz
    http-check expect status 200
    default-server inter 100ms fall 2 rise 2
    server g0 127.0.0.1:{port0} check
    server g1 127.0.0.1:{port1} check
"""

STATE_RE = re.compile(r"Server be/(g\d) is (UP|DOWN)")


def free_ports(n):
    """n distinct free loopback ports (bound together, then released).

    They are taken from outside the kernel's ephemeral range when it leaves
    room: a backend port is free for a moment at each restart, and an
    outgoing connection (HAProxy opens thousands) must not be given it as
    its local port then, or the restart fails with "address in use"."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            lo, hi = map(int, f.read().split())
    except (OSError, ValueError):
        lo, hi = 1024, 65535
    pool = list(range(max(10000, lo - 20000), lo)) + \
        list(range(hi + 1, 65536))
    random.shuffle(pool)
    candidates = [0] * n if len(pool) < n else pool[:200] + [0] * n
    socks = []
    try:
        for port in candidates:
            if len(socks) == n:
                break
            s = socket.socket()
            try:
                s.bind((HOST, port))
            except OSError:
                s.close()
                continue
            socks.append(s)
        assert len(socks) == n, "no %d free ports" % n
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class HAProxy:
    """haproxy -db in the foreground; its stdout and stderr are followed
    line by line so server state changes can be waited on as events."""

    def __init__(self, tmpdir, fe_port, ports, server_mode):
        self.sock_path = os.path.join(tmpdir, "haproxy.sock")
        self.cfg_path = os.path.join(tmpdir, "haproxy.cfg")
        self.fe_port = fe_port
        with open(self.cfg_path, "w") as f:
            f.write(HAPROXY_CFG.format(sock=self.sock_path, fe_port=fe_port,
                                       port0=ports[0], port1=ports[1],
                                       server_mode=server_mode))
        self.lines = []          # (monotonic time, stream, text)
        self.cond = threading.Condition()
        self.exited = False
        self.proc = subprocess.Popen(
            ["haproxy", "-db", "-f", self.cfg_path],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE)
        self.readers = [threading.Thread(target=self._read, args=(st, name),
                                         daemon=True)
                        for st, name in ((self.proc.stdout, "out"),
                                         (self.proc.stderr, "err"))]
        for r in self.readers:
            r.start()
        # No event says "frontend bound": poll its port, bounded, and the
        # stats socket, which may come a moment after the port accepts.
        deadline = time.monotonic() + TIMEOUT
        while True:
            assert self.proc.poll() is None, \
                "haproxy exited (%s):\n%s" % (self.proc.returncode,
                                              self.text())
            try:
                socket.create_connection((HOST, fe_port), timeout=1).close()
                if os.path.exists(self.sock_path):
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, \
                "haproxy frontend never accepted:\n" + self.text()
            time.sleep(0.02)

    def _read(self, stream, name):
        for raw in stream:
            text = raw.decode("utf-8", "replace").rstrip("\n")
            with self.cond:
                self.lines.append((time.monotonic(), name, text))
                self.cond.notify_all()
        with self.cond:
            self.exited = True
            self.cond.notify_all()

    def mark(self):
        with self.cond:
            return len(self.lines)

    def wait_state(self, server, state, start, timeout=TIMEOUT):
        """Time at which HAProxy reported server UP/DOWN, at or after line
        index start."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for at, _, text in self.lines[start:]:
                    m = STATE_RE.search(text)
                    if m and m.group(1) == server and m.group(2) == state:
                        return at
                start = len(self.lines)
                left = deadline - time.monotonic()
                assert left > 0 and self.proc.poll() is None, \
                    "haproxy never reported %s %s within %ss:\n%s" % (
                        server, state, timeout, self.text())
                self.cond.wait(min(left, 0.5))

    def text(self, last=40):
        with self.cond:
            return "\n".join("%s: %s" % (n, t) for _, n, t in
                             self.lines[-last:])

    def abnormal(self):
        """Request log lines (dontlog-normal: only abnormal ones are
        logged)."""
        with self.cond:
            return [t for _, n, t in self.lines
                    if n == "out" and " fe be/" in t]

    def command(self, cmd):
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(5)
        try:
            s.connect(self.sock_path)
            s.sendall(cmd.encode() + b"\n")
            out = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    return out.decode()
                out += chunk
        finally:
            s.close()

    def stat(self):
        """show stat of backend be's servers: {svname: {column: value}}."""
        text = self.command("show stat")
        lines = [l for l in text.splitlines() if l.strip()]
        cols = lines[0].lstrip("# ").split(",")
        out = {}
        for l in lines[1:]:
            row = dict(zip(cols, l.split(",")))
            if row.get("pxname") == "be" and row.get("svname", "")[:1] == "g":
                out[row["svname"]] = row
        return out

    def wait_all_up(self, names, timeout=TIMEOUT):
        """Both servers UP with a passed check. A server starts UP before
        its first check, and a check that passes changes nothing, so there
        is no line to wait for: poll the stats socket, bounded."""
        deadline = time.monotonic() + timeout
        while True:
            st = self.stat()
            if all(st.get(n, {}).get("status") == "UP" and
                   st[n].get("check_status") == "L7OK" for n in names):
                return st
            assert time.monotonic() < deadline, "servers not UP: %r" % {
                n: (st.get(n, {}).get("status"),
                    st.get(n, {}).get("check_status")) for n in names}
            time.sleep(0.05)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for r in self.readers:
            r.join(5)


class Load:
    """nthreads keep-alive clients through HAProxy, as fast as they go:
    POST /v1/events (1 to 3 events, each with a unique id) twice out of
    three, GET `get` (/livez or /healthz) once. Every request that does not
    get its expected complete answer is a failure, by kind. The first
    `fresh` threads open a new connection for each request (test_compose.py
    and test_docker.py use them)."""

    # What a good answer to each GET says in "status".
    GET_STATUS = {"/livez": "alive", "/healthz": "ok"}

    def __init__(self, port, tag, nthreads=NTHREADS, fresh=0, get="/livez"):
        self.port = port
        self.tag = tag
        self.fresh = fresh
        self.get = get
        self.cond = threading.Condition()
        self.sent = 0
        self.ok = 0
        self.failed = collections.Counter()
        self.failures = []               # (time, kind, detail, ids)
        self.accepted = set()
        self.max_ms = 0.0
        self.stop_ev = threading.Event()
        self.threads = [threading.Thread(target=self._loop, args=(i,),
                                         daemon=True)
                        for i in range(nthreads)]
        for t in self.threads:
            t.start()

    @staticmethod
    def classify(e):
        if isinstance(e, http.client.RemoteDisconnected):
            return "eof"
        if isinstance(e, socket.timeout):
            return "timeout"
        if isinstance(e, ConnectionRefusedError):
            return "refused"
        if isinstance(e, ConnectionResetError):
            return "reset"
        if isinstance(e, BrokenPipeError):
            return "broken_pipe"
        if isinstance(e, http.client.IncompleteRead):
            return "incomplete"
        return type(e).__name__

    def _loop(self, tid):
        try:
            self._run(tid)
        except Exception as e:       # a bug of the client: still counted
            self._fail("client_crashed", repr(e), [])

    def _run(self, tid):
        conn = None
        seq = 0
        try:
            while not self.stop_ev.is_set():
                if conn is None:
                    conn = http.client.HTTPConnection(HOST, self.port,
                                                      timeout=REQ_TIMEOUT)
                seq += 1
                if seq % 3 == 0:
                    method, path, body, ids = "GET", self.get, None, []
                    hdrs = {}
                else:
                    n = 1 + (seq // 3) % 3
                    ids = ["%s-%d-%d-%d" % (self.tag, tid, seq, i)
                           for i in range(n)]
                    events = [{"id": i, "thread": tid} for i in ids]
                    body = json.dumps(events[0] if n == 1 else events)
                    method, path = "POST", "/v1/events"
                    hdrs = {"Content-Type": "application/json"}
                with self.cond:
                    self.sent += 1
                t0 = time.monotonic()
                try:
                    conn.request(method, path, body, hdrs)
                    r = conn.getresponse()
                    data = r.read()
                except Exception as e:
                    self._fail(self.classify(e), "%s %s: %r" % (
                        method, path, e), ids)
                    conn.close()
                    conn = None
                    continue
                ms = (time.monotonic() - t0) * 1000
                if method == "POST":
                    good = r.status == 202 and \
                        _json(data) == {"accepted": len(ids)}
                else:
                    good = r.status == 200 and \
                        _json(data).get("status") == self.GET_STATUS[path]
                if good:
                    with self.cond:
                        self.ok += 1
                        self.max_ms = max(self.max_ms, ms)
                        self.accepted.update(ids)
                        self.cond.notify_all()
                else:
                    kind = ("http_5xx_%d" if r.status >= 500 else
                            "http_%d") % r.status
                    self._fail(kind, "%s %s: %d %r" % (method, path,
                                                       r.status, data[:200]),
                               ids)
                if r.will_close or tid < self.fresh:
                    conn.close()
                    conn = None
        finally:
            if conn is not None:
                conn.close()

    def _fail(self, kind, detail, ids):
        with self.cond:
            self.failed[kind] += 1
            self.failures.append((time.monotonic(), kind, detail, ids))
            self.cond.notify_all()

    def ok_count(self):
        with self.cond:
            return self.ok

    def wait_ok(self, n, timeout=TIMEOUT):
        with self.cond:
            assert self.cond.wait_for(lambda: self.ok >= n, timeout), \
                "load reached only %d ok requests (of %d); failures %r" % (
                    self.ok, n, self.failures[:5])

    def stop(self):
        self.stop_ev.set()
        for t in self.threads:
            t.join(REQ_TIMEOUT + 5)
        assert not any(t.is_alive() for t in self.threads), \
            "a load thread hung"


def _json(data):
    try:
        v = json.loads(data)
        return v if isinstance(v, dict) else {}
    except ValueError:
        return {}


def spool_ids(path):
    ids = []
    if os.path.exists(path):
        with open(path, "rb") as f:
            for line in f.read().decode().splitlines():
                if line.strip():
                    ids.append(json.loads(line)["id"])
    return ids


def start_upload(fe_port, server, eid):
    """POST /v1/events through HAProxy, pinned to server, with only half
    its body sent: a request in flight on that instance."""
    body = json.dumps({"id": eid, "straddles": server}).encode()
    half = len(body) // 2
    s = socket.create_connection((HOST, fe_port), timeout=TIMEOUT)
    s.sendall(b"POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\n"
              b"X-Pin: %s\r\nContent-Type: application/json\r\n"
              b"Content-Length: %d\r\n\r\n" % (server.encode(), len(body))
              + body[:half])
    return s, body[half:]


def start_graced(port, spool, workers):
    g = Graced("--listen", "%s:%d" % (HOST, port),
               "--admin-listen", "%s:0" % HOST,
               "--spool", spool,
               "--workers", str(workers),
               "--drain-delay", DRAIN_DELAY,
               "--shutdown-timeout", "10")
    assert g.port == port, "serving on %r, asked for %d" % (g.port, port)
    serving = g.wait_event("serving")
    assert serving.get("workers", workers) == workers, serving
    return g


def load_requests(g, start, end=None):
    """Requests from the load (not HAProxy's health checks) logged by g
    between log indexes start and end."""
    with g.cond:
        lines = g.lines[start:end]
    return [l for l in lines if l.get("event") == "request" and
            l.get("path") != "/healthz"]


def index_of(g, line):
    with g.cond:
        for i in range(len(g.lines) - 1, -1, -1):
            if g.lines[i] is line:
                return i
    raise AssertionError("line not in log")


def rolling_restart(server_mode, workers, rounds):
    if shutil.which("haproxy") is None:
        raise SkipTest("haproxy is not on PATH (apt-get install haproxy)")
    tmp = tempfile.TemporaryDirectory(prefix="graced-haproxy-")
    fe_port, port0, port1 = free_ports(3)
    ports = [port0, port1]
    names = ["g0", "g1"]
    spools = [os.path.join(tmp.name, "%s.jsonl" % n) for n in names]
    tag = "%s-w%d-%s" % (server_mode, workers, uuid.uuid4().hex[:8])
    inst = [None, None]
    ha = load = None
    restarts = []            # dicts of timings and counts
    served = [0, 0]          # load requests served, per slot, all lifetimes
    straddled = []           # (slot, event id) of uploads across a drain
    reported = False
    try:
        for i in range(2):
            inst[i] = start_graced(ports[i], spools[i], workers)
        ha = HAProxy(tmp.name, fe_port, ports, server_mode)
        ha.wait_all_up(names)
        load = Load(fe_port, tag)
        load.wait_ok(200)

        for rnd in range(rounds):
            for i in range(2):
                g = inst[i]
                hmark = ha.mark()
                with g.cond:
                    gmark = len(g.lines)
                ok0 = load.ok_count()
                # An upload in flight on this instance across the whole
                # drain: its body is finished only once the listener has
                # closed; it must still get its 202 from this instance.
                eid = "%s-straddle-%s-%d" % (tag, names[i], rnd)
                up, rest = start_upload(fe_port, names[i], eid)
                t_term = time.monotonic()
                g.signal(signal.SIGTERM)
                begin = g.wait_event("drain_begin", start=gmark)
                t_down = ha.wait_state(names[i], "DOWN", hmark)
                stop = g.wait_event("drain_stop", start=gmark)
                for w in range(workers):
                    g.wait_event("listener_closed", start=gmark,
                                 pred=lambda l, w=w: l.get("worker") == w)
                try:
                    up.sendall(rest)
                    ust, _, ubody = recv_response(up)
                except OSError as e:
                    raise AssertionError(
                        "upload in flight across the drain of %s failed: "
                        "%r\nhaproxy:\n%s\ngraced:\n%s" % (
                            names[i], e, ha.text(), g.log_text()))
                finally:
                    up.close()
                assert ust == 202 and _json(ubody) == {"accepted": 1}, (
                    "upload across the drain of %s: %d %r" % (
                        names[i], ust, ubody))
                straddled.append((i, eid))
                rc = g.wait_exit()
                t_exit = g.exited_at
                stopped = g.wait_event("stopped", start=gmark)
                assert rc == 0, "instance %s exited %r:\n%s" % (
                    names[i], rc, g.log_text())
                assert stopped.get("cut_off") == 0, stopped
                # The LB took it out while it still served (the point of
                # the drain delay): DOWN before the listener closed.
                assert t_down < stop["_at"], (
                    "haproxy marked %s DOWN %.0f ms after graced closed its "
                    "listener (drain delay %s s)" % (
                        names[i], (t_down - stop["_at"]) * 1000,
                        DRAIN_DELAY))
                bi, si = index_of(g, begin), index_of(g, stop)
                during_drain = load_requests(g, bi, si)
                after_stop = load_requests(g, si)
                served[i] += len(load_requests(g, 0))
                g.close()
                inst[i] = None

                hmark = ha.mark()
                inst[i] = g = start_graced(ports[i], spools[i], workers)
                with g.cond:
                    gmark = len(g.lines)
                serving_at = g.wait_event("serving")["_at"]
                t_up = ha.wait_state(names[i], "UP", hmark)
                # ... and the load reaches the new instance again.
                g.wait_event("request", start=gmark,
                             pred=lambda l: l.get("path") != "/healthz")
                ok_during = load.ok_count() - ok0
                restarts.append({
                    "name": names[i], "round": rnd + 1,
                    "term_down": t_down - t_term,
                    "term_exit": t_exit - t_term,
                    "exit_serving": serving_at - t_exit,
                    "serving_up": t_up - serving_at,
                    "total": t_up - t_term,
                    "during_drain": len(during_drain),
                    "after_stop": len(after_stop),
                    "ok_during": ok_during,
                })
                assert ok_during > 0, "the load stalled during the restart"

        load.wait_ok(load.ok_count() + 100)
        load.stop()
        stat = ha.stat()
        for i in range(2):
            g = inst[i]
            g.signal(signal.SIGTERM)
            rc = g.wait_exit()
            served[i] += len(load_requests(g, 0))
            assert rc == 0, "instance %s exited %r:\n%s" % (
                names[i], rc, g.log_text())
        ha.stop()

        # ------------------------------------------------ counts, verdict
        accepted = load.accepted | {eid for _, eid in straddled}
        in_spool = collections.Counter()
        per_spool = []
        for p in spools:
            ids = spool_ids(p)
            per_spool.append(len(ids))
            in_spool.update(ids)
        print("  [%s, workers %d, %d round(s)] requests sent %d, ok %d, "
              "failed %d %s" % (server_mode, workers, rounds, load.sent,
                                load.ok, sum(load.failed.values()),
                                dict(load.failed)))
        print("  events accepted (202) %d, in spools %d (%s), max latency "
              "%.0f ms" % (len(accepted), sum(per_spool),
                           " + ".join(map(str, per_spool)), load.max_ms))
        print("  load requests served per instance slot: %s" % served)
        for r in restarts:
            print("  restart %s round %d: SIGTERM->DOWN %.0f ms, ->exit "
                  "%.0f ms, exit->serving %.0f ms, serving->UP %.0f ms, "
                  "total %.0f ms; load requests served while draining %d, "
                  "after listener close %d; ok requests during restart %d"
                  % (r["name"], r["round"], r["term_down"] * 1000,
                     r["term_exit"] * 1000, r["exit_serving"] * 1000,
                     r["serving_up"] * 1000, r["total"] * 1000,
                     r["during_drain"], r["after_stop"], r["ok_during"]))
        for n in names:
            s = stat.get(n, {})
            print("  haproxy %s: stot %s, econ %s, eresp %s, wretr %s, "
                  "wredis %s, hrsp_5xx %s, chkdown %s" % (
                      n, s.get("stot"), s.get("econ"), s.get("eresp"),
                      s.get("wretr"), s.get("wredis"), s.get("hrsp_5xx"),
                      s.get("chkdown")))
        print("  uploads in flight across a listener close: %d, all 202" %
              len(straddled))
        reported = True
        abnormal = ha.abnormal()
        if abnormal:
            print("  haproxy abnormal request log lines: %d, first: %s" % (
                len(abnormal), abnormal[:5]))

        assert not load.failures, (
            "%d failed request(s) %r; first: %r; failed events spooled "
            "anyway: %d; haproxy log: %r" % (
                len(load.failures), dict(load.failed), load.failures[:10],
                sum(1 for f in load.failures for i in f[3] if i in in_spool),
                abnormal[:10]))
        for n in names:
            s = stat.get(n, {})
            assert s.get("eresp") == "0", (
                "haproxy counted %s response errors on %s (a server closed "
                "or broke a response)" % (s.get("eresp"), n))
            assert s.get("hrsp_5xx") == "0", (n, s.get("hrsp_5xx"))
            # HAProxy took each instance out before its listener closed
            # (asserted above), so it never had to retry or redispatch:
            # the retries of the config hid nothing.
            assert s.get("econ") == "0" and s.get("wretr") == "0" and \
                s.get("wredis") == "0", (
                    "haproxy met a refused/failed connection on %s: econ %s "
                    "wretr %s wredis %s" % (n, s.get("econ"), s.get("wretr"),
                                            s.get("wredis")))
        assert all(served), "an instance slot served no load: %r" % served
        assert sum(r["during_drain"] for r in restarts) > 0, \
            "no load request reached a draining instance: the drain " \
            "window was never exercised"
        dups = [i for i, c in in_spool.items() if c > 1]
        assert not dups, "%d events spooled twice: %r" % (len(dups),
                                                         dups[:10])
        missing = accepted - set(in_spool)
        assert not missing, "%d accepted events not in a spool: %r" % (
            len(missing), sorted(missing)[:10])
        extra = set(in_spool) - accepted
        assert not extra, "%d events spooled without a 202: %r" % (
            len(extra), sorted(extra)[:10])
        assert len(load.accepted) > 0 and len(straddled) == 2 * rounds
        for i, eid in straddled:
            assert eid in spool_ids(spools[i]), (
                "upload %s was not served by the draining instance %s" % (
                    eid, names[i]))
    finally:
        if load is not None:
            load.stop_ev.set()
            if not reported:
                with load.cond:
                    print("  (stopped early) requests sent %d, ok %d, failed "
                          "%r, first failures %r" % (
                              load.sent, load.ok, dict(load.failed),
                              load.failures[:5]))
        for g in inst:
            if g is not None:
                g.close()
        if ha is not None:
            ha.stop()
        if load is not None:
            for t in load.threads:
                t.join(REQ_TIMEOUT + 5)
        tmp.cleanup()


def test_rolling_restart_keepalive():
    rolling_restart("http-keep-alive", 1, 2)


def test_rolling_restart_server_close():
    rolling_restart("http-server-close", 1, 2)


def test_rolling_restart_workers2_keepalive():
    rolling_restart("http-keep-alive", 2, 2)


def test_rolling_restart_workers2_server_close():
    rolling_restart("http-server-close", 2, 2)


if __name__ == "__main__":
    run([
        test_rolling_restart_keepalive,
        test_rolling_restart_server_close,
        test_rolling_restart_workers2_keepalive,
        test_rolling_restart_workers2_server_close,
    ])
