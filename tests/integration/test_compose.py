"""The compose stack (docker/compose.yaml), black-box on the real engine: two
graced replicas behind HAProxy come up, and under continuous load through
HAProxy (keep-alive clients and clients that open a new connection for each
request; POSTed events with unique ids and GETs) graced2 is frozen for
half a second (`docker pause`: slow, not gone, so HAProxy must keep it),
then the replicas are recreated one after the other, as a rolling restart
does (`up -d --no-deps --force-recreate graced1`, then graced2, then graced1
again), each waited back into HAProxy's rotation before the next. It must
end with 0 failed requests, HAProxy having taken out only the replica being
recreated, and every 202 event in the two spool volumes exactly once.

The stack runs as its own compose project (graced-test-PID), publishes
HAProxy on a port the engine picks on 127.0.0.1 (GRACED_PUBLISH), and uses
the graced image test_docker.py builds (GRACED_IMAGE, the same build
function, so it is built once per run). HAProxy's image is built by compose
from docker/haproxy.Dockerfile (Debian's package) when its tag is missing.
Everything, volumes included, is removed whatever happens.

Skipped (exit 77) like test_docker.py (GRACED_SKIP_DOCKER=1, no usable
engine) and when neither `docker-compose` nor `docker compose` is there.
Waits follow HAProxy's log (`docker logs -f`): its "Server ... is DOWN/UP"
lines and the log line of each request, which names the replica.
"""
import collections
import http.client
import json
import os
import subprocess
import time

import test_docker
from harness import SkipTest, TIMEOUT, run
from test_docker import BUILD_TIMEOUT, DOCKER_TIMEOUT, Follower, docker
from test_haproxy import Load, REQ_TIMEOUT

COMPOSE_FILE = os.path.join(test_docker.REPO, "docker", "compose.yaml")
PROJECT = "graced-test-%d" % os.getpid()
REPLICAS = ("graced1", "graced2")
RECREATES = ("graced1", "graced2", "graced1")
SPOOL = "/var/lib/graced/events.jsonl"   # the image's GRACED_SPOOL
NTHREADS = 4                             # of which FRESH open a new
FRESH = 2                                # connection for each request
STALL = 0.5                              # seconds graced2 is frozen
WARMUP = 200                             # ok requests before the first
                                         # recreate, and after the last


def compose_argv():
    """docker-compose (Debian 12's v1) or the `docker compose` plugin;
    skips when neither answers."""
    for argv in (["docker-compose"], ["docker", "compose"]):
        try:
            p = subprocess.run(argv + ["version"], stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if p.returncode == 0:
            return argv + ["-p", PROJECT, "-f", COMPOSE_FILE]
    raise SkipTest("neither docker-compose nor docker compose: "
                   "apt-get install -y docker-compose")


class Stack:
    """The compose project: up, commands, HAProxy's log followed, down."""

    def __init__(self):
        self.argv = compose_argv()
        self.env = dict(os.environ, GRACED_IMAGE=test_docker.IMAGE,
                        GRACED_PUBLISH="127.0.0.1:0")
        self.log = None
        self.up = False

    def run(self, *args, timeout=DOCKER_TIMEOUT, check=True):
        p = subprocess.run(self.argv + list(args), env=self.env,
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True,
                           timeout=timeout)
        if check and p.returncode != 0:
            raise AssertionError("compose %s: exit %d\n%s%s\n%s" % (
                " ".join(args), p.returncode, p.stdout[-3000:],
                p.stderr[-3000:], self.logs()))
        return p

    def logs(self):
        if not self.up:
            return ""
        p = subprocess.run(self.argv + ["logs", "--no-color", "--tail",
                                        "30"],
                           env=self.env, stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, timeout=DOCKER_TIMEOUT)
        return p.stdout[-6000:]

    def container(self, service):
        cid = self.run("ps", "-q", service).stdout.strip()
        assert cid, "no container for %s" % service
        return cid

    def start(self):
        """up -d (building HAProxy's image if its tag is missing); returns
        HAProxy's published port and follows its log."""
        self.up = True
        self.run("up", "-d", timeout=BUILD_TIMEOUT)
        out = self.run("port", "haproxy", "8080").stdout.strip()
        assert out.startswith("127.0.0.1:"), "haproxy published on %r" % out
        self.log = Follower(["docker", "logs", "-f",
                             self.container("haproxy")])
        return int(out.rsplit(":", 1)[1])

    def wait_log(self, text, after, what, timeout=TIMEOUT):
        """The first line of HAProxy's log containing text, read at or after
        time after (time.time()); returns its time."""
        line = self.log.wait(lambda l: text in l.get("raw", "") and
                             l["_at"] >= after, what, timeout)
        return line["_at"]

    def served_by(self, service, after, timeout=TIMEOUT):
        """Waits for a request HAProxy logged as served by service."""
        return self.wait_log(" public graced/%s " % service, after,
                             "a request served by %s" % service, timeout)

    def states(self):
        """HAProxy's log lines on its servers' state, for diagnostics."""
        return "\n".join(l["raw"] for l in self.log.all(
            lambda l: l.get("raw", "").startswith("Server graced/")))

    def spool(self, service):
        """The event ids in service's spool volume, read by a throwaway
        container (the replicas must have stopped: the spool is complete)."""
        vol = "%s_spool%s" % (PROJECT, service[-1])
        p = docker("run", "--rm", "--label", test_docker.LABEL, "-v",
                   vol + ":/spool:ro", "--entrypoint", "cat",
                   test_docker.IMAGE, "/spool/" + os.path.basename(SPOOL))
        return [json.loads(l)["id"] for l in p.stdout.splitlines() if l]

    def down(self):
        if self.log is not None:
            self.log.close()
        if self.up:
            try:
                p = self.run("down", "-v", "--remove-orphans", timeout=120,
                             check=False)
                ok = p.returncode == 0
            except (OSError, subprocess.TimeoutExpired):
                ok = False
            if not ok:   # said, not raised: it must not hide the failure
                print("# compose down -v failed: remove project %s by hand"
                      % PROJECT, flush=True)


def warm_up(stack, port):
    """Until HAProxy has served a request from each replica (its log says
    which): polls GET /livez, since docker-proxy accepts before HAProxy
    listens and HAProxy may start before it resolved both names."""
    deadline = time.monotonic() + 30
    start = time.time()
    seen = set()
    while seen != set(REPLICAS):
        assert time.monotonic() < deadline, \
            "HAProxy never served from both replicas (got %r); log:\n%s" % (
                seen, stack.log.text())
        try:
            c = http.client.HTTPConnection("127.0.0.1", port,
                                           timeout=TIMEOUT)
            c.request("GET", "/livez")
            c.getresponse().read()
            c.close()
        except (OSError, http.client.HTTPException):
            time.sleep(0.1)
            continue
        seen = {s for s in REPLICAS if stack.log.all(
            lambda l, s=s: " public graced/%s " % s in l.get("raw", "")
            and " 200 " in l["raw"] and l["_at"] >= start)}


def test_replicas_recreated_under_load():
    """A stall, then three recreates, one replica at a time, under load
    through HAProxy: the stalled replica stays in rotation; each recreated
    one leaves HAProxy's rotation and comes back (a new container, serving
    requests) before the next; 0 failed requests; every 202 event in a
    spool exactly once and nothing else there; each replica exits 0 at
    `compose stop` (a clean drain)."""
    test_docker.need_image()
    stack = Stack()
    load = None
    began = time.monotonic()
    try:
        port = stack.start()
        warm_up(stack, port)
        # The limit of the engines where a fixed `maxconn 20000` kept
        # HAProxy from starting: compose.yaml sets it.
        limits = docker("exec", stack.container("haproxy"), "cat",
                        "/proc/1/limits").stdout
        files = [l.split()[3:5] for l in limits.splitlines()
                 if l.startswith("Max open files")]
        assert files == [["20000", "20000"]], limits
        print("# stack up and serving from both replicas in %.1f s" %
              (time.monotonic() - began), flush=True)
        load = Load(port, PROJECT, nthreads=NTHREADS, fresh=FRESH)
        load.wait_ok(WARMUP)
        # A replica that stalls (frozen, as CPU starvation or a slow disk
        # would have it) is slow, not gone: it must stay in rotation, and
        # what it was sent be answered late, not fail.
        stalled = stack.container("graced2")
        docker("pause", stalled)
        time.sleep(STALL)
        docker("unpause", stalled)
        load.wait_ok(load.ok_count() + WARMUP)
        for service in RECREATES:
            old = stack.container(service)
            t0 = time.time()
            stack.run("up", "-d", "--no-deps", "--force-recreate",
                      service, timeout=DOCKER_TIMEOUT)
            new = stack.container(service)
            assert new != old, "%s was not recreated" % service
            down = stack.wait_log("Server graced/%s is DOWN" % service,
                                  t0, "%s out of rotation" % service)
            up = stack.wait_log("Server graced/%s is UP" % service,
                                down, "%s back in rotation" % service,
                                timeout=30)
            stack.served_by(service, up)
            print("# %s recreated: out of rotation %.1f s, %d ok so "
                  "far" % (service, up - down, load.ok_count()),
                  flush=True)
        load.wait_ok(load.ok_count() + WARMUP)
        load.stop()
        with load.cond:
            print("# requests ok %d, failed %d (%r), slowest %.0f ms" % (
                load.ok, sum(load.failed.values()), dict(load.failed),
                load.max_ms), flush=True)
            assert not load.failed, \
                "failed requests %r, first: %r; HAProxy's servers:\n%s" % (
                    dict(load.failed), load.failures[:5], stack.states())
            accepted = set(load.accepted)
        # A replica left the rotation only when it was being recreated: a
        # slow health check never took out the one left serving.
        downs = collections.Counter(
            l["raw"].split()[1].split("/")[1] for l in stack.log.all(
                lambda l: l.get("raw", "").startswith("Server graced/") and
                " is DOWN" in l["raw"]))
        assert downs == collections.Counter(RECREATES), \
            "servers marked DOWN %r; HAProxy's servers:\n%s" % (
                dict(downs), stack.states())

        # A clean stop drains both replicas; then the spools are whole.
        ids = {s: stack.container(s) for s in REPLICAS}
        stack.run("stop", timeout=60)
        for service, cid in ids.items():
            code = docker("inspect", "-f", "{{.State.ExitCode}}",
                          cid).stdout.strip()
            assert code == "0", "%s exited %s" % (service, code)
        count = collections.Counter()
        for service in REPLICAS:
            ids_in = stack.spool(service)
            assert ids_in, "nothing in %s's spool" % service
            count.update(ids_in)
        # Each id answered 202 once, and nothing else.
        assert count == collections.Counter(accepted), \
            "spools: more than once %r; 202 but in none %r; never 202 %r" % (
                [i for i, n in count.items() if n > 1][:5],
                sorted(accepted - set(count))[:5],
                sorted(set(count) - accepted)[:5])
        print("# %d events, each in a spool once; %.0f s in all" % (
            len(accepted), time.monotonic() - began), flush=True)
    finally:
        if load is not None:
            load.stop_ev.set()
            for t in load.threads:
                t.join(REQ_TIMEOUT + 5)
        stack.down()


if __name__ == "__main__":
    run([test_replicas_recreated_under_load])
