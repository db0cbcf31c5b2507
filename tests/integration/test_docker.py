"""The Docker image (docker/Dockerfile), black-box: it builds, serves on a
published port, runs graced as PID 1 and as a non-root user, and `docker
stop` ends in a clean drain that answers a request still uploading, with the
drain in the container's log and exit status 0; its HEALTHCHECK turns
unhealthy as soon as the drain begins; a request stuck past the shutdown
timeout is cut off by graced itself (exit 1) before Docker's SIGKILL;
graced's exit status is the container's; and under load `docker kill
--signal USR2` upgrades in place (PID 1, the supervisor, stays; each
generation is its child), rolls back a failing executable, and drops no
request.

Skipped (exit 77) when `docker info` fails or GRACED_SKIP_DOCKER=1. When the
debian:bookworm-slim base image is missing (no registry), docker/base-image.sh
builds it from Debian's packages first (a few minutes, once, as root). The
image is built once per run as graced:test (GRACED_DOCKER_IMAGE) and kept,
so later runs reuse Docker's build cache. Containers publish on 127.0.0.1
only and are removed, with their volumes, whatever happens.

Waits follow `docker logs -f` and `docker events` (no sleeps); the one
polling loop waits for a published port to answer, which has no event.
"""
import calendar
import collections
import http.client
import json
import os
import socket
import subprocess
import threading
import time

import harness
from harness import SkipTest, recv_response, run
from test_haproxy import Load, REQ_TIMEOUT

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
IMAGE = os.environ.get("GRACED_DOCKER_IMAGE", "graced:test")
BASE = "debian:bookworm-slim"
LABEL = "graced-test=test_docker"
TIMEOUT = harness.TIMEOUT
BUILD_TIMEOUT = 1800   # seconds: the base image and the build, worst case
DOCKER_TIMEOUT = 60    # seconds: any single docker command but the build

# The image's defaults (docker/Dockerfile), which these tests check.
DRAIN_DELAY = 2.0
SHUTDOWN_TIMEOUT = 8.0
DOCKER_STOP_GRACE = 10.0
EXE = "/usr/local/bin/graced"   # what the supervisor starts generations from

# The upgrade under load.
UPGRADES = 3            # docker kill -s USR2, each to the next generation
LOAD_THREADS = 4        # of which LOAD_FRESH open a new connection for
LOAD_FRESH = 2          # each request
LOAD_OK = 200           # ok requests before the first upgrade, after each


# ---------------------------------------------------------------- docker

def docker(*args, timeout=DOCKER_TIMEOUT, check=True):
    """Runs one docker command; returns the CompletedProcess (text)."""
    p = subprocess.run(("docker",) + args, stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError("docker %s: exit %d\n%s%s" % (
            " ".join(args), p.returncode, p.stdout[-3000:], p.stderr[-3000:]))
    return p


_setup = {"done": False, "skip": None, "error": None}


def need_image():
    """Skips unless Docker is usable; builds the base image if missing and
    the image once per run. Raises the first failure again on later calls."""
    if os.environ.get("GRACED_SKIP_DOCKER") == "1":
        raise SkipTest("GRACED_SKIP_DOCKER=1")
    if _setup["done"]:
        if _setup["skip"]:
            raise SkipTest(_setup["skip"])
        if _setup["error"]:
            raise AssertionError("image setup failed earlier:\n" +
                                 _setup["error"])
        return
    _setup["done"] = True
    try:
        ok = docker("info", timeout=30, check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        ok = False
    if not ok:
        _setup["skip"] = "docker info fails: no usable Docker daemon"
        raise SkipTest(_setup["skip"])
    try:
        if docker("image", "inspect", BASE, check=False).returncode != 0:
            if os.geteuid() != 0:
                _setup["skip"] = ("%s is missing and docker/base-image.sh "
                                  "needs root to build it" % BASE)
                raise SkipTest(_setup["skip"])
            start = time.monotonic()
            p = subprocess.run([os.path.join(REPO, "docker", "base-image.sh")],
                               stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True,
                               timeout=BUILD_TIMEOUT)
            assert p.returncode == 0, "docker/base-image.sh failed:\n" + \
                p.stdout[-4000:]
            print("# %s built by docker/base-image.sh in %.0f s" %
                  (BASE, time.monotonic() - start), flush=True)
        start = time.monotonic()
        p = subprocess.run(["docker", "build", "-q", "-f",
                            os.path.join(REPO, "docker", "Dockerfile"),
                            "-t", IMAGE, REPO],
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True,
                           timeout=BUILD_TIMEOUT)
        assert p.returncode == 0, "docker build failed:\n" + p.stdout[-6000:]
        print("# %s built in %.1f s" % (IMAGE, time.monotonic() - start),
              flush=True)
    except SkipTest:
        raise
    except BaseException as e:
        _setup["error"] = "%s: %s" % (type(e).__name__, e)
        raise


def image_env():
    env = docker("image", "inspect", "-f", "{{json .Config.Env}}",
                 IMAGE).stdout
    return dict(kv.split("=", 1) for kv in json.loads(env))


class Follower:
    """A docker command whose output lines (JSON where they parse) are
    collected by a thread, for waits on a line rather than on time."""

    def __init__(self, argv):
        self.lines = []
        self.cond = threading.Condition()
        self.ended = False
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT)
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        for raw in self.proc.stdout:
            text = raw.decode("utf-8", "replace").rstrip("\n")
            try:
                line = json.loads(text)
                if not isinstance(line, dict):
                    line = {"raw": text}
            except ValueError:
                line = {"raw": text}
            line["_at"] = time.time()
            with self.cond:
                self.lines.append(line)
                self.cond.notify_all()
        self.proc.wait()
        with self.cond:
            self.ended = True
            self.cond.notify_all()

    def wait(self, pred, what, timeout=TIMEOUT):
        """The first line with pred(line) true; fails after timeout or when
        the command ends without one."""
        deadline = time.monotonic() + timeout
        seen = 0
        with self.cond:
            while True:
                # Only the lines not looked at yet: under load the log
                # grows by a line per request.
                for line in self.lines[seen:]:
                    if pred(line):
                        return line
                seen = len(self.lines)
                left = deadline - time.monotonic()
                if self.ended or left <= 0:
                    raise AssertionError("%s: not seen within %ss%s; got:\n%s"
                                         % (what, timeout,
                                            " (stream ended)" if self.ended
                                            else "", self.text()))
                self.cond.wait(left)

    def all(self, pred):
        with self.cond:
            return [l for l in self.lines if pred(l)]

    def text(self):
        with self.cond:
            return "\n".join(l.get("raw") or json.dumps(
                {k: v for k, v in l.items() if k != "_at"})
                for l in self.lines[-40:])

    def close(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.thread.join(5)


def docker_since():
    """A `docker events --since` value for now minus a second (seconds and
    nanoseconds, as docker wants them)."""
    ns = time.time_ns() - 1000000000
    return "%d.%09d" % (ns // 1000000000, ns % 1000000000)


class Container:
    """One graced:test container publishing 8080 on a free 127.0.0.1 port,
    with its log (`docker logs -f`) and events (`docker events`) followed."""

    def __init__(self, *run_args, cmd=()):
        self.id = None
        self.logs = self.events = None
        since = docker_since()
        self.id = docker("create", "--label", LABEL,
                         "-p", "127.0.0.1:0:8080", *run_args, IMAGE,
                         *cmd).stdout.strip()
        try:
            self.events = Follower(["docker", "events", "--since", since,
                                    "--filter", "container=" + self.id,
                                    "--format", "{{json .}}"])
            docker("start", self.id)
            self.logs = Follower(["docker", "logs", "-f", self.id])
            out = docker("port", self.id, "8080/tcp").stdout.split()
            addr = [a for a in out if a.startswith("127.0.0.1:")]
            assert addr, "8080 not published on 127.0.0.1: %r" % out
            self.port = int(addr[0].rsplit(":", 1)[1])
        except BaseException:
            self.close()
            raise

    def log_event(self, event, timeout=TIMEOUT):
        return self.logs.wait(lambda l: l.get("event") == event,
                              "log line %r" % event, timeout)

    def health_event(self, status, after=0.0, timeout=TIMEOUT):
        """The first `health_status: STATUS` event at or after time after
        (time.time() seconds); returns its time."""
        action = "health_status: " + status
        ev = self.events.wait(
            lambda e: e.get("Action", e.get("status")) == action and
            e.get("timeNano", 0) / 1e9 >= after,
            "event %r" % action, timeout)
        return ev["timeNano"] / 1e9

    def inspect(self, fmt):
        return docker("inspect", "-f", fmt, self.id).stdout.strip()

    def connect(self):
        return socket.create_connection(("127.0.0.1", self.port),
                                        timeout=TIMEOUT)

    def request(self, method, path, body=None):
        c = http.client.HTTPConnection("127.0.0.1", self.port,
                                       timeout=TIMEOUT)
        try:
            c.request(method, path, body=body)
            r = c.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, \
                r.read()
        finally:
            c.close()

    def wait_http(self, timeout=30.0):
        """Polls GET /healthz through the published port until it answers
        200 (docker-proxy accepts before graced listens, so early tries see
        a closed connection). Returns the parsed body."""
        deadline = time.monotonic() + timeout
        last = None
        while True:
            try:
                status, _, data = self.request("GET", "/healthz")
                if status == 200:
                    return json.loads(data)
                last = "status %d %r" % (status, data)
            except (OSError, http.client.HTTPException) as e:
                last = repr(e)
            if time.monotonic() > deadline:
                raise AssertionError(
                    "/healthz on 127.0.0.1:%d never answered 200 within %ss "
                    "(last: %s); state %s; log:\n%s" % (
                        self.port, timeout, last,
                        self.inspect("{{json .State}}"), self.logs.text()))
            time.sleep(0.05)

    def wait_exit(self, timeout=TIMEOUT):
        """docker wait, bounded; returns the exit code."""
        return int(docker("wait", self.id, timeout=timeout).stdout.strip())

    def close(self):
        if self.id:
            docker("rm", "-f", "-v", self.id, check=False)
        for f in (self.logs, self.events):
            if f is not None:
                f.close()


def log_time(line):
    """A log line's "ts" (2026-11-23T09:03:10.131Z, UTC) in epoch seconds."""
    ts = line["ts"]
    return calendar.timegm(time.strptime(ts[:19], "%Y-%m-%dT%H:%M:%S")) + \
        float("0" + ts[19:].rstrip("Z"))


def start_partial(c, event):
    """POST /v1/events headers and half the body on a raw connection to the
    published port; returns (socket, the rest of the body)."""
    body = json.dumps(event).encode()
    half = len(body) // 2
    s = c.connect()
    s.sendall(b"POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\n"
              b"Content-Type: application/json\r\n"
              b"Content-Length: %d\r\n\r\n" % len(body) + body[:half])
    return s, body[half:]


def wait_connections(c, n, timeout=10.0):
    """Polls /healthz (a connection itself) until graced counts at least n
    other connections: there is no log line for an accepted connection."""
    deadline = time.monotonic() + timeout
    while True:
        status, _, data = c.request("GET", "/healthz")
        body = json.loads(data)
        if status == 200 and body["connections"] >= n + 1:
            return body
        assert time.monotonic() < deadline, \
            "graced never saw %d connections: %r" % (n, body)
        time.sleep(0.02)


class Stopper(threading.Thread):
    """`docker stop` (or any docker command) in a thread, timed."""

    def __init__(self, *args):
        super().__init__(daemon=True)
        self.args = args
        self.result = self.error = None
        self.elapsed = None
        self.start()

    def run(self):
        t = time.monotonic()
        try:
            self.result = docker(*self.args, timeout=DOCKER_STOP_GRACE + 20)
        except BaseException as e:
            self.error = e
        self.elapsed = time.monotonic() - t

    def finish(self, timeout=DOCKER_STOP_GRACE + 25):
        self.join(timeout)
        assert not self.is_alive(), "docker %s did not return" % (self.args,)
        if self.error:
            raise self.error
        return self.result


# ---------------------------------------------------------------- tests

def test_image_config():
    """Non-root user, SIGTERM stop signal, HEALTHCHECK through graced
    probe, exec-form entrypoint, 8080, the spool volume, drain defaults
    that fit docker stop's 10 s, and nothing but the runtime in it."""
    need_image()
    cfg = json.loads(docker("image", "inspect", "-f", "{{json .Config}}",
                            IMAGE).stdout)
    user = cfg.get("User") or ""
    assert user and user.split(":")[0] not in ("root", "0"), \
        "image runs as root: User=%r" % user
    uid = docker("run", "--rm", "--label", LABEL, "--entrypoint", "id",
                 IMAGE, "-u").stdout.strip()
    assert uid.isdigit() and uid != "0", "id -u in the image: %r" % uid
    assert cfg.get("StopSignal") == "SIGTERM", cfg.get("StopSignal")
    assert cfg.get("Entrypoint") == ["graced"], cfg.get("Entrypoint")
    assert cfg.get("Cmd") == ["serve"], cfg.get("Cmd")
    assert "8080/tcp" in (cfg.get("ExposedPorts") or {}), cfg
    assert "/var/lib/graced" in (cfg.get("Volumes") or {}), cfg
    hc = cfg.get("Healthcheck") or {}
    assert "graced probe" in " ".join(hc.get("Test") or []), hc
    assert "curl" not in " ".join(hc.get("Test") or []), hc

    env = image_env()
    delay = float(env["GRACED_DRAIN_DELAY"])
    limit = float(env["GRACED_SHUTDOWN_TIMEOUT"])
    assert (delay, limit) == (DRAIN_DELAY, SHUTDOWN_TIMEOUT), env
    assert 0 < delay < limit < DOCKER_STOP_GRACE, \
        "need drain delay < shutdown timeout < docker stop's %ss: %r" % (
            DOCKER_STOP_GRACE, env)
    assert env.get("GRACED_SPOOL", "").startswith("/var/lib/graced/"), env
    assert env.get("GRACED_ADMIN_LISTEN", "").startswith("127.0.0.1:"), env
    # PID 1 is the supervisor: nothing turns it off.
    assert env.get("GRACED_SUPERVISOR", "on") == "on", env

    # Only the runtime: no curl, no compiler, no headers.
    p = docker("run", "--rm", "--label", LABEL, "--entrypoint", "sh", IMAGE,
               "-c", "for c in curl wget cc gcc make; do command -v $c; done;"
               " ls /usr/include/event2 2>/dev/null; true")
    assert p.stdout.strip() == "", "build tools in the runtime image: %r" % \
        p.stdout
    size = int(docker("image", "inspect", "-f", "{{.Size}}", IMAGE).stdout)
    base = int(docker("image", "inspect", "-f", "{{.Size}}", BASE).stdout)
    assert size - base < 20 * 1024 * 1024, \
        "image is %d MB over its base" % ((size - base) >> 20)


def test_serves_on_published_port():
    """/healthz answers 200 through -p 127.0.0.1:0:8080; graced is PID 1
    and not root; an event lands in the spool on the volume."""
    need_image()
    c = Container()
    try:
        body = c.wait_http()
        assert body["status"] == "ok" and body["state"] == "serving", body
        serving = c.log_event("serving")
        assert serving["listen"] == "0.0.0.0:8080", serving
        assert serving["admin"] == "127.0.0.1:8081", serving

        comm = docker("exec", c.id, "cat", "/proc/1/comm").stdout.strip()
        assert comm == "graced", "PID 1 is %r, not graced" % comm
        status = docker("exec", c.id, "cat", "/proc/1/status").stdout
        uids = [l.split()[1:] for l in status.splitlines()
                if l.startswith("Uid:")][0]
        assert "0" not in uids, "graced runs with uid 0: %r" % uids
        # The HEALTHCHECK's command, by hand.
        docker("exec", c.id, "graced", "probe",
               "http://127.0.0.1:8080/healthz")

        status, _, data = c.request("POST", "/v1/events",
                                    body=b'{"user":"ann","action":"docker"}')
        assert status == 202 and json.loads(data) == {"accepted": 1}, \
            (status, data)
        spool = docker("exec", c.id, "cat",
                       "/var/lib/graced/events.jsonl").stdout.splitlines()
        assert [json.loads(l) for l in spool] == \
            [{"user": "ann", "action": "docker"}], spool
        assert c.inspect("{{.State.Running}}") == "true"
    finally:
        c.close()


def test_docker_stop_drains_in_flight_request():
    """docker stop while a request body is half uploaded: the drain waits
    for it, it gets its 202, the event is in the spool, the log has the
    drain as JSON lines and the container exits 0, long before SIGKILL."""
    need_image()
    c = Container("--no-healthcheck")
    sock = stopper = None
    try:
        c.wait_http()
        sock, rest = start_partial(c, {"user": "bob", "action": "stop"})
        wait_connections(c, 1)

        stopper = Stopper("stop", c.id)
        begin = c.log_event("drain_begin")
        assert begin.get("cause") == "SIGTERM", begin
        stop = c.log_event("drain_stop", timeout=DRAIN_DELAY + TIMEOUT)
        assert stop.get("state") == "stopping", stop
        delay = log_time(stop) - log_time(begin)
        assert DRAIN_DELAY - 0.1 < delay < DRAIN_DELAY + 1, \
            "listener closed %.2fs after the signal" % delay
        assert stopper.is_alive(), \
            "docker stop returned with a request in flight: %r" % \
            stopper.result
        assert c.inspect("{{.State.Running}}") == "true"

        sock.sendall(rest)
        status, hdrs, body = recv_response(sock)
        assert status == 202, (status, body)
        assert json.loads(body) == {"accepted": 1}, body
        assert hdrs.get("connection", "").lower() == "close", hdrs

        stopper.finish()
        assert stopper.elapsed < SHUTDOWN_TIMEOUT, \
            "docker stop took %.1fs" % stopper.elapsed
        code = int(c.inspect("{{.State.ExitCode}}"))
        assert code == 0, "exit code %d; log:\n%s" % (code, c.logs.text())

        # The whole log, now that the container is gone.
        c.logs.wait(lambda l: l.get("event") == "stopped", "stopped")
        logs = docker("logs", c.id).stderr.splitlines()
        events = [json.loads(l) for l in logs if l.startswith("{")]
        names = [e.get("event") for e in events]
        for name in ("drain_begin", "drain_stop", "stopped"):
            assert name in names, "no %s line in docker logs:\n%s" % (
                name, "\n".join(logs[-20:]))
        assert names.index("drain_begin") < names.index("drain_stop") < \
            names.index("stopped"), names
        stopped = events[names.index("stopped")]
        assert stopped.get("exit") == 0 and stopped.get("cut_off") == 0, \
            stopped
        assert "cut_off" not in names, names
        posts = [e for e in events if e.get("event") == "request" and
                 e.get("path") == "/v1/events"]
        assert [e.get("status") for e in posts] == [202], posts

        spool = docker("run", "--rm", "--label", LABEL, "--volumes-from",
                       c.id, "--entrypoint", "cat", IMAGE,
                       "/var/lib/graced/events.jsonl").stdout.splitlines()
        assert [json.loads(l) for l in spool] == \
            [{"user": "bob", "action": "stop"}], spool
    finally:
        if sock is not None:
            sock.close()
        c.close()
        if stopper is not None:
            stopper.join(DOCKER_STOP_GRACE + 25)


def test_unhealthy_while_draining():
    """The HEALTHCHECK (graced probe of /healthz) turns the container
    unhealthy within the drain delay of a SIGTERM, while it still serves,
    and it then exits 0."""
    need_image()
    delay, limit = 5.0, 10.0
    c = Container("--health-interval", "200ms", "--health-retries", "1",
                  "--health-timeout", "3s", "--health-start-period", "1s",
                  "-e", "GRACED_DRAIN_DELAY=%g" % delay,
                  "-e", "GRACED_SHUTDOWN_TIMEOUT=%g" % limit)
    try:
        c.wait_http()
        c.health_event("healthy", timeout=30)
        assert c.inspect("{{.State.Health.Status}}") == "healthy", \
            c.inspect("{{json .State.Health}}")

        killed = time.time()
        docker("kill", "--signal", "TERM", c.id)
        begin = c.log_event("drain_begin")
        at = c.health_event("unhealthy", after=killed, timeout=delay + 5)
        assert at - killed < delay, \
            "unhealthy %.2fs after SIGTERM, drain delay %ss" % (
                at - killed, delay)
        assert not c.logs.all(lambda l: l.get("event") == "drain_stop"), \
            "unhealthy only after the listener closed:\n" + c.logs.text()
        assert c.inspect("{{.State.Health.Status}}") == "unhealthy"
        health = json.loads(c.inspect("{{json .State.Health}}"))
        assert health["Log"][-1]["ExitCode"] != 0, health

        # Draining, not dead: /healthz says so and the rest still works.
        status, hdrs, data = c.request("GET", "/healthz")
        assert status == 503, (status, data)
        assert json.loads(data)["status"] == "draining", data
        status, _, data = c.request("GET", "/livez")
        assert status == 200, (status, data)
        assert c.inspect("{{.State.Running}}") == "true"

        code = c.wait_exit(timeout=limit + TIMEOUT)
        assert code == 0, "exit code %d; log:\n%s" % (code, c.logs.text())
        stop = c.log_event("drain_stop")
        assert delay - 0.1 < log_time(stop) - log_time(begin) < delay + 1, \
            (begin, stop)
    finally:
        c.close()


def test_stuck_request_cut_off_before_sigkill():
    """A request that never finishes uploading: graced's shutdown timeout
    (8 s from the SIGTERM) cuts it off, logs it and exits 1 before docker
    stop's SIGKILL at 10 s would (137)."""
    need_image()
    c = Container("--no-healthcheck")
    sock = None
    try:
        c.wait_http()
        sock, _ = start_partial(c, {"user": "eve", "action": "stuck"})
        wait_connections(c, 1)
        docker("stop", c.id, timeout=DOCKER_STOP_GRACE + 20)
        code = int(c.inspect("{{.State.ExitCode}}"))
        assert code == 1, "exit code %d (137: SIGKILLed), log:\n%s" % (
            code, c.logs.text())
        assert c.inspect("{{.State.OOMKilled}}") == "false"
        begin = c.log_event("drain_begin")
        c.log_event("cut_off")
        stopped = c.log_event("stopped")
        assert stopped.get("exit") == 1, stopped
        assert stopped.get("cut_off", 0) >= 1, stopped
        # graced's own clock: cut off at the shutdown timeout, well before
        # docker stop's SIGKILL.
        took = log_time(stopped) - log_time(begin)
        assert SHUTDOWN_TIMEOUT - 0.5 < took < DOCKER_STOP_GRACE - 0.5, \
            "stopped %.2fs after drain_begin; log:\n%s" % (
                took, c.logs.text())
    finally:
        if sock is not None:
            sock.close()
        c.close()


def log_match(**fields):
    """A predicate for Follower.wait: a log line with these fields."""
    return lambda l: all(l.get(k) == v for k, v in fields.items())


def healthz(c):
    status, _, data = c.request("GET", "/healthz")
    assert status == 200, (status, data)
    return json.loads(data)


def test_usr2_upgrades_in_place_under_load():
    """The supervisor as PID 1, under load through the published port (new
    and keep-alive connections; POST /v1/events with unique ids and GET
    /healthz): each `docker kill -s USR2` starts the next generation, a
    child of PID 1, from the image's executable; it is ready, the old one
    hands over and exits 0, and /healthz says the generation went up by
    one. A replaced executable that fails is rolled back, the current
    generation serving on. The container stays the same (PID 1's host PID,
    running), `docker stop` still drains and exits 0, no request fails and
    every event answered 202 is in the spool exactly once."""
    need_image()
    c = Container()
    load = None
    took = []                   # (seconds from docker kill, log's ms)
    try:
        c.wait_http()
        pid1 = c.inspect("{{.State.Pid}}")
        started = c.inspect("{{.State.StartedAt}}")
        assert healthz(c)["generation"] == 1
        load = Load(c.port, "docker-%d" % os.getpid(), nthreads=LOAD_THREADS,
                    fresh=LOAD_FRESH, get="/healthz")
        load.wait_ok(LOAD_OK)

        for n in range(2, UPGRADES + 2):
            ok0 = load.ok_count()
            t0 = time.monotonic()
            docker("kill", "--signal", "USR2", c.id)
            begin = c.logs.wait(log_match(event="upgrade_begin",
                                          generation=n),
                                "upgrade_begin of generation %d" % n)
            assert begin["by"] == "SIGUSR2" and begin["from"] == n - 1 and \
                begin["exe"] == EXE, begin
            ready = c.logs.wait(log_match(event="upgrade_ready",
                                          generation=n),
                                "upgrade_ready of generation %d" % n)
            took.append((time.monotonic() - t0, ready["ms"]))
            # Both served during the probation, then the old one handed
            # over and left: from now on only the new one answers.
            old = c.logs.wait(log_match(event="generation_exit",
                                        generation=n - 1),
                              "generation %d's exit" % (n - 1))
            assert old["pid"] == ready["old_pid"] and old["role"] == "old" \
                and old["status"] == 0, old
            body = healthz(c)
            assert body["generation"] == n and \
                body["generations_draining"] == 0, body
            status = docker("exec", c.id, "cat", "/proc/%d/status" %
                            ready["pid"]).stdout
            assert "\nPPid:\t1\n" in status, \
                "generation %d is not PID 1's child:\n%s" % (n, status)
            assert load.ok_count() > ok0, \
                "no request served between docker kill and upgrade_ready"
            assert c.inspect("{{.State.Pid}} {{.State.Running}} "
                             "{{.State.StartedAt}}") == \
                "%s true %s" % (pid1, started), c.inspect("{{json .State}}")
            load.wait_ok(load.ok_count() + LOAD_OK)

        # The next generation runs whatever file is at the path now (put
        # there by a rename: the running one cannot be written): one that
        # fails is rolled back, the current generation never stopped.
        current = UPGRADES + 1
        docker("exec", "-u", "0", c.id, "sh", "-c",
               "printf '#!/bin/sh\\nexit 3\\n' >%s.new && chmod 755 %s.new "
               "&& mv %s.new %s" % (EXE, EXE, EXE, EXE))
        docker("kill", "--signal", "USR2", c.id)
        failed = c.log_event("upgrade_failed")
        assert failed["generation"] == current + 1 and \
            failed["serving"] == current and \
            failed["reason"] == "exited with status 3", failed
        assert healthz(c)["generation"] == current
        load.wait_ok(load.ok_count() + LOAD_OK)

        load.stop()
        with load.cond:
            print("# requests sent %d, ok %d, failed %d (%r); %d events; "
                  "slowest %.0f ms" % (load.sent, load.ok,
                                       sum(load.failed.values()),
                                       dict(load.failed),
                                       len(load.accepted), load.max_ms),
                  flush=True)
            assert not load.failed, "failed requests %r, first: %r" % (
                dict(load.failed), load.failures[:5])
            accepted = set(load.accepted)
        print("# upgrades: %s s from docker kill to upgrade_ready "
              "(upgrade_ready's ms: %s)" % (
                  ", ".join("%.2f" % t for t, _ in took),
                  ", ".join(str(ms) for _, ms in took)), flush=True)
        assert c.inspect("{{.State.Pid}}") == pid1

        # docker stop still drains the generation that serves.
        docker("stop", c.id, timeout=DOCKER_STOP_GRACE + 20)
        begin = c.log_event("drain_begin")
        assert begin.get("cause") == "SIGTERM", begin
        # Each old generation said "stopped" too, before the drain began.
        end = c.logs.wait(lambda l: l.get("event") == "stopped" and
                          l["_at"] >= begin["_at"], "the drain's stopped")
        assert end["exit"] == 0 and end["cut_off"] == 0, end
        code = int(c.inspect("{{.State.ExitCode}}"))
        assert code == 0, "exit code %d; log:\n%s" % (code, c.logs.text())
        assert not c.logs.all(lambda l: l.get("event") == "cut_off"), \
            c.logs.text()

        spool = docker("run", "--rm", "--label", LABEL, "--volumes-from",
                       c.id, "--entrypoint", "cat", IMAGE,
                       "/var/lib/graced/events.jsonl").stdout.splitlines()
        count = collections.Counter(json.loads(l)["id"] for l in spool)
        assert count == collections.Counter(accepted), \
            "spool: more than once %r; 202 but not there %r; never 202 %r" % (
                [i for i, k in count.items() if k > 1][:5],
                sorted(accepted - set(count))[:5],
                sorted(set(count) - accepted)[:5])
    finally:
        if load is not None:
            load.stop_ev.set()
            for t in load.threads:
                t.join(REQ_TIMEOUT + 5)
        c.close()


def test_exit_status_is_graceds():
    """The container's exit status is graced's: 2 for a bad flag or
    variable (one line naming it), 1 for a start-up failure."""
    need_image()
    p = docker("run", "--rm", "--label", LABEL, IMAGE, "serve",
               "--drain-delay", "soon", check=False)
    assert p.returncode == 2, (p.returncode, p.stderr)
    assert "--drain-delay" in p.stderr and \
        len(p.stderr.strip().splitlines()) == 1, p.stderr

    p = docker("run", "--rm", "--label", LABEL,
               "-e", "GRACED_SHUTDOWN_TIMEOUT=nope", IMAGE, check=False)
    assert p.returncode == 2, (p.returncode, p.stderr)
    assert "shutdown-timeout" in p.stderr.lower(), p.stderr

    p = docker("run", "--rm", "--label", LABEL,
               "-e", "GRACED_SPOOL=/nonexistent/events.jsonl", IMAGE,
               check=False)
    assert p.returncode == 1, (p.returncode, p.stderr)
    assert "/nonexistent/events.jsonl" in p.stderr, p.stderr


if __name__ == "__main__":
    try:
        run([test_image_config, test_serves_on_published_port,
             test_docker_stop_drains_in_flight_request,
             test_unhealthy_while_draining,
             test_stuck_request_cut_off_before_sigkill,
             test_usr2_upgrades_in_place_under_load,
             test_exit_status_is_graceds])
    finally:
        # Whatever a failed test left behind (only this file's containers).
        try:
            left = subprocess.run(
                ["docker", "ps", "-aq", "--filter", "label=" + LABEL],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                text=True, timeout=30).stdout.split()
            if left:
                subprocess.run(["docker", "rm", "-f", "-v"] + left,
                               stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            pass
