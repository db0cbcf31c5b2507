"""The kubelet's part of a pod termination, played against the real graced
with the Deployment's settings scaled down in time (docs/kubernetes.md,
"The termination sequence").

Actors, each a thread:
- the readiness prober: GET /healthz every readinessProbe period (scaled),
  a new connection each time, as the kubelet does;
- the endpoints controller: removes the pod from the clients' endpoint set
  a propagation lag after the first failed readiness probe;
- load clients: POST /v1/events and GET /livez back to back on keep-alive
  connections, but start a request only while the pod is in their endpoint
  set (a request already started is finished; a connection the server
  answered with Connection: close is replaced by a new one).
A failure is a reset, an EOF without a response, a 5xx, a status other than
the expected one, a timeout, or a connect refused while the pod was still in
the endpoint set.

The kubelet: runs the preStop hook (the manifest's `graced drain --wait
--timeout N`) while the load goes on, sends SIGTERM when it returns (or
when the kubelet's own bound for the hook is over: second case), and
SIGKILLs the process if it is still alive when the grace period is over.

Times: the Deployment's figures scaled so that the drain delay is 1 s
(readiness period 0.1 s, shutdown timeout 2 s, ...), except that the hook's
bound is at least the delay + 2 s and the grace period at least delay +
timeout + 2 s, for a loaded machine. The endpoint lag is 0.3 s
(GRACED_K8S_ENDPOINT_LAG to change it: above the drain delay, requests
fail, as they would in a cluster).

Without python3-yaml the Deployment's figures cannot be read; the same
figures, built in below, are used instead.
"""
import collections
import http.client
import json
import os
import signal
import socket
import subprocess
import threading
import time

import harness
from harness import GRACED, Graced, recv_response, run

try:
    import test_k8s_manifests as manifests
    import yaml  # noqa: F401  (manifests needs it)
except ImportError:
    manifests = None

HOST = "127.0.0.1"
# Deployment figures used when the manifest cannot be read (no yaml).
BUILT_IN = {"drain_delay": 10.0, "shutdown_timeout": 20.0,
            "first_byte_grace": 2.0, "request_timeout": 5.0,
            "prestop_timeout": 15.0, "grace": 40.0,
            "readiness_period": 1.0, "readiness_failures": 1,
            "readiness_timeout": 1.0}
BUILT_IN_PRESTOP = ["graced", "drain", "--wait", "--timeout", "15"]
# Endpoint removal lag after the first failed probe, in scaled seconds
# (3 s in a real cluster at the scale used below).
ENDPOINT_LAG = float(os.environ.get("GRACED_K8S_ENDPOINT_LAG", "0.3"))
LOAD_THREADS = 4
REQUEST_TIMEOUT = 10.0   # bound on one client request
WARMUP_REQUESTS = 200    # requests served before the termination begins


def settings():
    """(figures scaled so the drain delay is 1 s, the preStop command,
    the container env) from the Deployment, or the built-in figures."""
    if manifests is not None:
        dep = manifests.deployment()
        f = manifests.figures(dep)
        cmd = manifests.prestop_command(manifests.container(dep))
        env = manifests.env_of(manifests.container(dep))
    else:
        print("  python3-yaml missing: using the built-in figures")
        f, cmd, env = dict(BUILT_IN), list(BUILT_IN_PRESTOP), {}
    scale = 1.0 / f["drain_delay"]
    s = {k: (v * scale if k != "readiness_failures" else v)
         for k, v in f.items()}
    s["scale"] = scale
    # Loose on a shared machine: the hook gets 2 s beyond the drain delay
    # (starting a process and the drain can take a while on a loaded
    # machine), the grace period at least delay + timeout + 2 s.
    s["prestop_timeout"] = max(s["prestop_timeout"], s["drain_delay"] + 2.0)
    s["grace"] = max(s["grace"], s["drain_delay"] + s["shutdown_timeout"] +
                     2.0, s["prestop_timeout"] + 2.0)
    return s, cmd, env


def start_pod(s, env):
    """graced with the container's env and its drain figures scaled (flags
    win over the env), on 127.0.0.1 ports of its own. The first-byte grace
    and the request timeout stay the manifest's: they bound clients, and
    the clients here run in real time."""
    keep = {k: v for k, v in env.items()
            if k not in ("GRACED_LISTEN", "GRACED_ADMIN_LISTEN",
                         "GRACED_SPOOL", "GRACED_WORKERS")}
    return Graced("--drain-delay", "%g" % s["drain_delay"],
                  "--shutdown-timeout", "%g" % s["shutdown_timeout"],
                  env=keep)


class Endpoints:
    """The clients' view of the Service's endpoints: this pod, until the
    endpoints controller removes it."""

    def __init__(self):
        self.lock = threading.Lock()
        self.present = True
        self.removed_at = None
        self.removed = threading.Event()

    def has_pod(self):
        with self.lock:
            return self.present

    def remove(self):
        with self.lock:
            self.present = False
            self.removed_at = time.monotonic()
        self.removed.set()


class Cluster:
    """The prober, the endpoints controller and the load clients around
    one graced pod."""

    def __init__(self, g, s):
        self.g, self.s = g, s
        self.endpoints = Endpoints()
        self.stop = threading.Event()
        self.first_unready = threading.Event()
        self.first_unready_at = None
        self.lock = threading.Condition()
        self.ok = 0
        self.ok_after = 0          # requests started after termination began
        self.closed_by_server = 0  # responses with Connection: close
        self.failures = []         # (kind, detail)
        self.accepted = []         # event ids answered 202
        self.per_thread = collections.Counter()
        self.terminating_at = None
        self.probes = []           # (time, status or error)
        self.threads = []

    # ------------------------------------------------------------ actors

    def prober(self):
        period = self.s["readiness_period"]
        timeout = max(self.s["readiness_timeout"], 1.0)
        while not self.stop.is_set():
            at = time.monotonic()
            c = http.client.HTTPConnection(HOST, self.g.port, timeout=timeout)
            try:
                c.request("GET", "/healthz", headers={"Connection": "close"})
                r = c.getresponse()
                r.read()
                result = r.status
            except (OSError, http.client.HTTPException) as e:
                result = type(e).__name__
            finally:
                c.close()
            self.probes.append((at, result))
            if result != 200 and not self.first_unready.is_set():
                self.first_unready_at = time.monotonic()
                self.first_unready.set()
            # The probe period is what is being modelled here.
            self.stop.wait(period)

    def endpoints_controller(self):
        if not self.first_unready.wait(harness.TIMEOUT):
            return
        # The propagation lag is what is being modelled here.
        if self.stop.wait(ENDPOINT_LAG):
            return
        self.endpoints.remove()

    def client(self, n):
        try:
            self._client(n)
        except Exception as e:  # a bug here must not pass as "no failure"
            self.fail("client crashed", "%s: %s" % (type(e).__name__, e))

    def _client(self, n):
        conn = None
        i = 0
        deadline = time.monotonic() + 2 * harness.TIMEOUT
        while not self.stop.is_set() and time.monotonic() < deadline:
            if not self.endpoints.has_pod():
                break
            started = time.monotonic()
            if conn is None:
                conn = http.client.HTTPConnection(HOST, self.g.port,
                                                  timeout=REQUEST_TIMEOUT)
                try:
                    conn.connect()
                except ConnectionRefusedError:
                    # Decided a moment ago, with the pod in the set.
                    self.fail("refused", "thread %d connect" % n)
                    conn = None
                    continue
                except OSError as e:
                    self.fail("connect", "%s: %s" % (type(e).__name__, e))
                    conn = None
                    continue
            i += 1
            event = None
            try:
                if i % 2:
                    event = "k8s-%d-%d" % (n, i)
                    conn.request("POST", "/v1/events",
                                 body=json.dumps({"id": event, "n": i}),
                                 headers={"Content-Type":
                                          "application/json"})
                    want = 202
                else:
                    conn.request("GET", "/livez")
                    want = 200
                r = conn.getresponse()
                body = r.read()
                close = r.will_close
            except http.client.RemoteDisconnected as e:
                self.fail("eof", "thread %d request %d: %s" % (n, i, e))
                conn.close()
                conn = None
                continue
            except (OSError, http.client.HTTPException) as e:
                self.fail(type(e).__name__,
                          "thread %d request %d: %s" % (n, i, e))
                conn.close()
                conn = None
                continue
            if r.status != want:
                self.fail("5xx" if r.status >= 500 else "status",
                          "thread %d: %d %r" % (n, r.status, body[:200]))
            elif event is not None and body != b'{"accepted":1}':
                self.fail("body", "thread %d: %r" % (n, body[:200]))
            else:
                with self.lock:
                    self.ok += 1
                    self.per_thread[n] += 1
                    if event is not None:
                        self.accepted.append(event)
                    if self.terminating_at is not None and \
                            started >= self.terminating_at:
                        self.ok_after += 1
                    if close:
                        self.closed_by_server += 1
                    self.lock.notify_all()
            if close:
                conn.close()
                conn = None
        if conn is not None:
            conn.close()

    def fail(self, kind, detail):
        with self.lock:
            self.failures.append((kind, detail))
            self.lock.notify_all()

    # ---------------------------------------------------------- control

    def start(self):
        self.threads = [threading.Thread(target=self.prober, daemon=True),
                        threading.Thread(target=self.endpoints_controller,
                                         daemon=True)]
        self.threads += [threading.Thread(target=self.client, args=(n,),
                                          daemon=True)
                         for n in range(LOAD_THREADS)]
        for t in self.threads:
            t.start()

    def wait_warm(self):
        """Waits (bounded) until every client has been served and
        WARMUP_REQUESTS were answered in all."""
        deadline = time.monotonic() + harness.TIMEOUT
        with self.lock:
            while not (self.ok >= WARMUP_REQUESTS and
                       len(self.per_thread) == LOAD_THREADS):
                left = deadline - time.monotonic()
                assert left > 0 and not self.failures, \
                    "warm-up: %d ok, failures %r" % (self.ok, self.failures)
                self.lock.wait(left)

    def mark_terminating(self):
        with self.lock:
            self.terminating_at = time.monotonic()

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join(harness.TIMEOUT)
            assert not t.is_alive(), "%s did not stop" % t.name


def prestop(cmd, s, g, container_env):
    """Starts the manifest's preStop command against this pod, in the
    container's env (a hook's env): the binary is ours, the bound scaled,
    the admin address the pod's (through GRACED_ADMIN_LISTEN, as in the
    container, or --admin if the command has one)."""
    argv = [GRACED] + list(cmd[1:])
    assert option_index(argv, "--timeout") is not None, cmd
    argv[option_index(argv, "--timeout")] = "%g" % s["prestop_timeout"]
    admin = "%s:%d" % (HOST, g.admin_port)
    if option_index(argv, "--admin") is not None:
        argv[option_index(argv, "--admin")] = admin
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("GRACED_")}
    env.update(container_env)
    env["GRACED_ADMIN_LISTEN"] = admin
    return subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=env)


def option_index(argv, flag):
    for i, a in enumerate(argv[:-1]):
        if a == flag:
            return i + 1
    return None


def listener_refuses(port):
    """True if a connect to the public port is refused (listener closed);
    False if it is accepted or hangs."""
    try:
        s = socket.create_connection((HOST, port), timeout=2)
    except ConnectionRefusedError:
        return True
    except OSError:
        return False
    s.close()
    return False


class PooledUpload:
    """A client that pooled a keep-alive connection while the pod was Ready
    and, after the endpoints dropped the pod, sends one more request on it
    (kube-proxy keeps established connections to a removed endpoint): a
    slow upload, half of its body during the drain delay, the rest after
    the listener has closed, so it is in flight when the kubelet's SIGTERM
    comes."""

    EVENT = "k8s-pooled-upload"

    def __init__(self, g):
        self.sock = g.connect()
        self.sock.sendall(b"GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        status, hdrs, _ = recv_response(self.sock)
        assert status == 200, status
        assert hdrs.get("connection", "").lower() != "close", hdrs
        self.body = json.dumps({"id": self.EVENT}).encode()
        self.half = len(self.body) // 2
        self.begun_at = self.done_at = None

    def begin(self):
        self.sock.sendall(b"POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                          b"Content-Type: application/json\r\n"
                          b"Content-Length: %d\r\n\r\n" % len(self.body) +
                          self.body[:self.half])
        self.begun_at = time.monotonic()

    def finish(self):
        """Sends the rest; (status, headers, body) or the error."""
        try:
            self.sock.sendall(self.body[self.half:])
            out = recv_response(self.sock, timeout=REQUEST_TIMEOUT)
        except OSError as e:
            out = (type(e).__name__, {}, str(e).encode())
        self.done_at = time.monotonic()
        self.sock.close()
        return out


def wait_exit_or_kill(g, deadline):
    """The kubelet's grace period: the exit status, or None after SIGKILL."""
    try:
        return g.wait_exit(timeout=max(0.0, deadline - time.monotonic()))
    except AssertionError:
        g.signal(signal.SIGKILL)
        g.wait_exit()
        return None


def finish_upload(cl, up):
    """Completes the pooled upload; it must be answered 202 and close."""
    status, hdrs, body = up.finish()
    if status != 202 or body != b'{"accepted":1}':
        cl.fail("upload", "%r %r" % (status, body[:200]))
        return
    if hdrs.get("connection", "").lower() != "close":
        cl.fail("upload", "no Connection: close while stopping: %r" % hdrs)
    with cl.lock:
        cl.ok += 1
        cl.ok_after += 1
        cl.accepted.append(up.EVENT)


def begin_upload_in_drain(cl, g, hook, up):
    """Once the endpoints dropped the pod, and while the drain delay still
    runs (preStop waiting, no listener closed), begins the pooled upload.
    If the drain delay did not outlast the endpoints' lag, says what the
    clients saw meanwhile."""
    removed = cl.endpoints.removed.wait(harness.TIMEOUT)
    late = []
    if not removed:
        late.append("the endpoints never dropped the pod")
    if hook.poll() is not None:
        late.append("preStop returned before the endpoints dropped the pod")
    if g.events("listener_closed"):
        late.append("listener closed before the endpoints dropped the pod")
    if late:
        cl.finish()
        raise AssertionError("%s; %d failed requests: %r" % (
            ", ".join(late), len(cl.failures),
            collections.Counter(k for k, _ in cl.failures)))
    up.begin()


def hook_output(hook, deadline):
    try:
        out, err = hook.communicate(
            timeout=max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        hook.kill()
        out, err = hook.communicate()
    return out, err


def check_hook(hook, out, err, g, refused, t0):
    """preStop exited 0 once every listener had closed, with the reply of
    the admin listener (not "gone": an upload was still in flight, so the
    instance was there to answer)."""
    assert hook.returncode == 0, (hook.returncode, out, err, timeline(g, t0))
    assert b"listeners closed" in out, (out, err)
    assert refused, "preStop returned while the listener still accepted"
    assert len(g.events("listener_closed")) == workers_of(g), g.log_text()


def timeline(g, t0):
    """When the lifecycle log lines were read, relative to t0."""
    out = []
    for ev in ("drain_begin", "drain_stop", "listener_closed", "stopped"):
        lines = g.events(ev)
        if lines:
            out.append("%s +%.2f s" % (ev, lines[0]["_at"] - t0))
    return ", ".join(out)


def check_outcome(g, cl, status, up, t0, name):
    """What every termination must end with."""
    print("  %s: %s" % (name, timeline(g, t0)))
    ids = [json.loads(l)["id"] for l in g.spool_lines() if l.strip()]
    spooled = collections.Counter(ids)
    accepted = collections.Counter(cl.accepted)
    print("  %s: requests ok %d (%d started after termination began, %d "
          "answered with Connection: close), failed %d, events accepted %d, "
          "spooled %d, probes %d; exit %s %.2f s after termination began, "
          "%.3f s after the last request" % (
              name, cl.ok, cl.ok_after, cl.closed_by_server,
              len(cl.failures), len(cl.accepted), len(ids), len(cl.probes),
              status, (g.exited_at or time.monotonic()) - t0,
              (g.exited_at or time.monotonic()) - (up.done_at or t0)),
          flush=True)
    assert status is not None, \
        "still running at the end of the grace period: SIGKILLed\n" + \
        g.log_text()
    assert not cl.failures, "failed requests: %r" % cl.failures[:10]
    assert status == 0, "exit %s\n%s" % (status, g.log_text())
    assert cl.ok_after > 1, \
        "no request was served during the drain delay: the model is off"
    assert cl.closed_by_server > 0, "no Connection: close while draining"
    dup = [i for i, n in spooled.items() if n > 1]
    assert not dup, "events spooled twice: %r" % dup[:10]
    missing = [i for i in accepted if i not in spooled]
    assert not missing, "202 events not in the spool: %r" % missing[:10]
    assert spooled == accepted, "spool has events never answered 202: %r" \
        % list((spooled - accepted).keys())[:10]
    # Readiness flipped, and the pod left the endpoints before the listener
    # closed (else the drain delay does not cover the lag).
    assert cl.first_unready_at is not None, cl.probes[-5:]
    closed = [l["_at"] for l in g.events("listener_closed")]
    assert closed and cl.endpoints.removed_at < min(closed), \
        "endpoints removed after the listener closed"
    stopped = g.events("stopped")
    assert stopped and stopped[-1]["cut_off"] == 0, stopped
    # Exit the moment the last request was answered (loosely: the machine
    # is shared).
    assert g.exited_at - up.done_at < 2.0, \
        "exit %.2f s after the last request" % (g.exited_at - up.done_at)


def workers_of(g):
    return g.wait_event("serving")["workers"]


# ------------------------------------------------------------------ cases

def test_termination_prestop_then_sigterm():
    """The normal termination: preStop drains and returns once the listener
    is closed, SIGTERM then finds only in-flight work (a pooled client's
    upload), exit 0 the moment it is answered, well within the grace
    period; nothing failed, every 202 event spooled once."""
    s, cmd, env = settings()
    g = start_pod(s, env)
    cl = Cluster(g, s)
    try:
        cl.start()
        up = PooledUpload(g)
        cl.wait_warm()
        t0 = time.monotonic()
        grace_end = t0 + s["grace"]
        cl.mark_terminating()
        hook = prestop(cmd, s, g, env)
        begin_upload_in_drain(cl, g, hook, up)
        out, err = hook_output(hook, grace_end)
        returned = time.monotonic()
        refused = listener_refuses(g.port)
        alive = g.proc.poll() is None
        g.signal(signal.SIGTERM)  # the kubelet, once preStop is done
        finish_upload(cl, up)
        status = wait_exit_or_kill(g, grace_end)
        cl.finish()
        print("  preStop returned %d after %.2f s: %s" % (
            hook.returncode, returned - t0, out.decode().strip()))
        assert alive, "graced exited with an upload in flight"
        check_hook(hook, out, err, g, refused, t0)
        assert returned - t0 >= 0.8 * s["drain_delay"], \
            "preStop returned %.2f s into a %g s drain delay" % (
                returned - t0, s["drain_delay"])
        assert g.wait_event("drain_begin")["cause"] == "admin"
        check_outcome(g, cl, status, up, t0, "preStop then SIGTERM")
    finally:
        cl.stop.set()
        g.close()


def test_sigterm_while_prestop_waits():
    """The kubelet's bound on the hook is over before the drain delay (and
    before the endpoints have caught up): SIGTERM arrives while preStop is
    still waiting. It must not cut the drain delay short (it is the first
    signal; the drain came from the admin listener): the listener closes
    when the delay is over, the hook returns, the upload in flight is
    answered, exit 0, nothing failed."""
    s, cmd, env = settings()
    kubelet_bound = 0.2 * s["drain_delay"]
    g = start_pod(s, env)
    cl = Cluster(g, s)
    try:
        cl.start()
        up = PooledUpload(g)
        cl.wait_warm()
        t0 = time.monotonic()
        grace_end = t0 + s["grace"]
        cl.mark_terminating()
        hook = prestop(cmd, s, g, env)
        g.wait_event("drain_begin")
        try:
            hook.wait(timeout=max(0.0, t0 + kubelet_bound -
                                  time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
        assert hook.poll() is None, \
            "preStop returned after %.2f s, before the kubelet's bound" % (
                time.monotonic() - t0)
        sigterm_at = time.monotonic()
        in_endpoints = cl.endpoints.has_pod()
        g.signal(signal.SIGTERM)  # the kubelet, its bound for the hook over
        begin_upload_in_drain(cl, g, hook, up)
        out, err = hook_output(hook, grace_end)
        returned = time.monotonic()
        refused = listener_refuses(g.port)
        alive = g.proc.poll() is None
        finish_upload(cl, up)
        status = wait_exit_or_kill(g, grace_end)
        cl.finish()
        print("  SIGTERM %.2f s in (pod %s the endpoints); preStop returned "
              "%d after %.2f s: %s" % (
                  sigterm_at - t0, "still in" if in_endpoints else
                  "already out of", hook.returncode, returned - t0,
                  out.decode().strip()))
        assert alive, "graced exited with an upload in flight"
        check_hook(hook, out, err, g, refused, t0)
        stop = g.wait_event("drain_stop")
        assert stop["why"] == "drain delay over", \
            "the kubelet's SIGTERM cut the drain delay short: %r" % stop
        held = stop["elapsed_ms"] / 1000.0
        assert held >= 0.8 * s["drain_delay"], \
            "listener closed %.2f s into a %g s delay" % (
                held, s["drain_delay"])
        check_outcome(g, cl, status, up, t0, "SIGTERM during preStop")
    finally:
        cl.stop.set()
        g.close()


if __name__ == "__main__":
    run([test_termination_prestop_then_sigterm,
         test_sigterm_while_prestop_waits])
