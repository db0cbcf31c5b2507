"""Upgrades in place (issue 9, tests 1 and 2), black-box.

graced runs as a supervisor whose PID never changes; an upgrade starts the
next generation from the executable path, and the old one hands over once
the new one is ready. Under continuous load (keep-alive clients POSTing
events with ids and GETting /livez, clients opening a new connection per
request, and a keep-alive /healthz poller):

1. Ten upgrades in a row, by SIGUSR2 and by `graced upgrade`, with one and
   with two workers: not one request fails, /healthz never fails, every 202
   event is in the spool exactly once, the supervisor's PID is alive
   throughout, the generation goes up by one each time, and after the final
   SIGTERM (exit 0) no process of the service is left.
2. Rollback: the executable replaced by one that exits at once, then by one
   that never gets ready: `graced upgrade` fails with the reason, the
   generation does not change, not one request fails; the real binary put
   back, the next upgrade succeeds. Also: one upgrade at a time, a new
   generation that dies within the probation, --supervisor off, and the
   service's exit status when its generation dies or the supervisor is
   killed.
"""
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time

import harness
from harness import Graced, run, TIMEOUT
from test_activation import Fresh
from test_haproxy import Load, spool_ids

HOST = "127.0.0.1"
UPGRADES = 10


class Healthz:
    """A client polling /healthz: every answer must be 200 (a generation
    handing over stays ready, a new one answers "serving" from its first
    request). Keep-alive (a connection is reopened only after an answer
    said Connection: close) or, with fresh, a new connection each time."""

    def __init__(self, port, fresh=False):
        self.port = port
        self.fresh = fresh
        self.ok = 0
        self.failed = []
        self.generations = set()
        self.stop_ev = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self):
        import http.client
        import json
        conn = None
        while not self.stop_ev.is_set():
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(HOST, self.port,
                                                      timeout=10)
                conn.request("GET", "/healthz")
                r = conn.getresponse()
                body = json.loads(r.read())
                if r.status != 200:
                    self.failed.append((r.status, body))
                else:
                    self.ok += 1
                    self.generations.add(body["generation"])
                if r.will_close or self.fresh:
                    conn.close()
                    conn = None
            except Exception as e:
                self.failed.append((Load.classify(e), repr(e)))
                conn = None

    def stop(self):
        self.stop_ev.set()
        self.thread.join(15)
        assert not self.thread.is_alive(), "the /healthz poller hung"


def generation(g):
    """The generation that answers a new connection's /healthz."""
    status, body = g.json("GET", "/healthz")
    assert status == 200, body
    return body["generation"]


def assert_generation(g, n):
    """New connections reach generation n, and only it: the upgrade is
    reported done (upgrade_ready, graced upgrade's answer) once the old
    one has closed its listeners."""
    for _ in range(20):
        got = generation(g)
        assert got == n, "generation %d answered, not %d" % (got, n)


def graced_upgrade(g, *args, timeout=60):
    """Runs `graced upgrade` against g's admin listener."""
    return subprocess.run(
        [harness.GRACED, "upgrade", "--admin",
         "%s:%d" % (HOST, g.admin_port)] + list(args),
        capture_output=True, text=True, timeout=timeout)


def pid_gone(pid, timeout=TIMEOUT):
    """Waits (bounded) until pid is no process at all, or a zombie being
    reaped; True if it went."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open("/proc/%d/stat" % pid) as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return True
        except FileNotFoundError:
            return True
        time.sleep(0.02)
    return False


def upgrade(g, by, n):
    """One upgrade to generation n, by "signal" or "command"; returns the
    new generation's pid."""
    start = len(g.lines)
    if by == "signal":
        g.signal(signal.SIGUSR2)
    else:
        p = graced_upgrade(g)
        assert p.returncode == 0, (p.returncode, p.stdout, p.stderr)
        assert "generation %d serves" % n in p.stdout, p.stdout
    ready = g.wait_event("upgrade_ready", start=start)
    assert ready["generation"] == n, ready
    assert g.proc.poll() is None, "the supervisor exited"
    os.kill(g.proc.pid, 0)
    assert_generation(g, n)
    return ready["pid"]


def upgrades_under_load(workers):
    g = Graced("--workers", str(workers), "--drain-delay", "0.5")
    load = fresh = health = fresh_health = None
    try:
        pids = []
        assert generation(g) == 1
        load = Load(g.port, "up%d" % workers)
        fresh = Fresh(g.port)
        health = Healthz(g.port)
        fresh_health = Healthz(g.port, fresh=True)
        load.wait_ok(100)
        t0 = time.monotonic()
        for i in range(UPGRADES):
            pids.append(upgrade(g, "signal" if i % 2 == 0 else "command",
                                i + 2))
            load.wait_ok(load.ok_count() + 50)
        took = time.monotonic() - t0
        status, metrics = g.request("GET", "/metrics")[0::2]
        assert b'graced_upgrades_total{result="ok"} %d' % UPGRADES in \
            metrics, metrics
        load.stop()
        fresh.stop()
        health.stop()
        fresh_health.stop()
        g.signal(signal.SIGTERM)
        assert g.wait_exit() == 0, g.log_text()
        failures = sum(load.failed.values()) + len(fresh.failed) + \
            len(health.failed) + len(fresh_health.failed)
        print("  [workers %d] %d upgrades in %.1f s; requests ok %d + %d "
              "on new connections + %d /healthz, failed %d, slowest "
              "keep-alive request %.0f ms" % (
                  workers, UPGRADES, took, load.ok, fresh.ok,
                  health.ok + fresh_health.ok, failures, load.max_ms))
        assert failures == 0, "failed requests: %r %r %r %r" % (
            load.failures[:5], fresh.failed[:5], health.failed[:5],
            fresh_health.failed[:5])
        assert min(health.generations) == 1 and \
            max(health.generations) == UPGRADES + 1, health.generations
        ids = spool_ids(g.spool)
        assert len(ids) == len(set(ids)), "an event is in the spool twice"
        assert set(ids) == load.accepted, (
            "spool and 202 answers differ: %d missing, %d extra" % (
                len(load.accepted - set(ids)), len(set(ids) - load.accepted)))
        # Each old generation's exit is logged; the last one's "stopped"
        # line ends the log.
        exits = g.events("generation_exit")
        assert sorted(e["generation"] for e in exits) == \
            list(range(1, UPGRADES + 1)), exits
        assert all(e["status"] == 0 and e["role"] == "old"
                   for e in exits), exits
        assert g.lines[-1]["event"] == "stopped", g.log_text()
        # Several generations share the log: no line is ever cut in two.
        broken = [l["raw"] for l in g.lines if "raw" in l]
        assert not broken, broken[:3]
        ready = g.events("generation_ready")
        assert [e["generation"] for e in ready] == \
            list(range(1, UPGRADES + 2)), ready
        for pid in pids + [e["pid"] for e in ready]:
            assert pid_gone(pid), "generation pid %d is still running" % pid
    finally:
        for client in (load, fresh, health, fresh_health):
            if client is not None:
                client.stop_ev.set()
        g.close()


def test_ten_upgrades_under_load_workers1():
    """1. Ten upgrades (SIGUSR2 and graced upgrade in turn), one worker."""
    upgrades_under_load(1)


def test_ten_upgrades_under_load_workers2():
    """1. The same with two workers (two SO_REUSEPORT sockets handed on)."""
    upgrades_under_load(2)


def replace_exe(path, content=None, source=None):
    """Replaces the file at path as a package upgrade does: a new file
    renamed over it (a running binary cannot be written in place)."""
    tmp = path + ".new"
    if source is not None:
        shutil.copy(source, tmp)
    else:
        with open(tmp, "w") as f:
            f.write(content)
    os.chmod(tmp, 0o755)
    os.replace(tmp, path)


def test_rollback_keeps_the_old_generation():
    """2. A binary that exits at once, then one that never gets ready: the
    upgrade fails with the reason and nothing is lost; the real binary
    back, the next upgrade succeeds."""
    tmp = tempfile.TemporaryDirectory(prefix="graced-exe-")
    exe = os.path.join(tmp.name, "graced")
    shutil.copy(harness.GRACED, exe)
    g = Graced("--upgrade-timeout", "2", binary=exe)
    load = fresh = None
    try:
        load = Load(g.port, "rb")
        fresh = Fresh(g.port)
        load.wait_ok(100)
        replace_exe(exe, "#!/bin/sh\nexit 3\n")
        p = graced_upgrade(g)
        assert p.returncode == 1, (p.returncode, p.stdout, p.stderr)
        assert "exited with status 3" in p.stderr, p.stderr
        failed = g.wait_event("upgrade_failed")
        assert failed["generation"] == 2 and failed["serving"] == 1, failed
        assert generation(g) == 1
        load.wait_ok(load.ok_count() + 50)

        # Not exec: the shell's child would hold the listeners if the
        # shell alone were killed.
        replace_exe(exe, "#!/bin/sh\nsleep 600\nexit 0\n")
        start = len(g.lines)
        t0 = time.monotonic()
        p = graced_upgrade(g)
        took = time.monotonic() - t0
        assert p.returncode == 1, (p.returncode, p.stdout, p.stderr)
        assert "not ready within 2 s" in p.stderr, p.stderr
        assert 1.5 < took < 10, took
        begin = g.wait_event("upgrade_begin", start=start)
        assert pid_gone(begin["pid"]), "the hung generation was not killed"
        left = subprocess.run(["pgrep", "-g", str(begin["pid"])],
                              capture_output=True, text=True).stdout
        assert all(pid_gone(int(p)) for p in left.split()), (
            "its children live on: %s" % left)
        assert generation(g) == 1
        load.wait_ok(load.ok_count() + 50)

        replace_exe(exe, source=harness.GRACED)
        p = graced_upgrade(g)
        assert p.returncode == 0, (p.returncode, p.stdout, p.stderr)
        assert_generation(g, 2)
        load.wait_ok(load.ok_count() + 50)
        load.stop()
        fresh.stop()
        status, metrics = g.request("GET", "/metrics")[0::2]
        assert b'graced_upgrades_total{result="failed"} 2' in metrics
        assert b'graced_upgrades_total{result="ok"} 1' in metrics
        g.signal(signal.SIGTERM)
        assert g.wait_exit() == 0, g.log_text()
        failures = sum(load.failed.values()) + len(fresh.failed)
        print("  requests ok %d + %d on new connections, failed %d" % (
            load.ok, fresh.ok, failures))
        assert failures == 0, "failed requests: %r %r" % (
            load.failures[:5], fresh.failed[:5])
        ids = spool_ids(g.spool)
        assert len(ids) == len(set(ids)) and set(ids) == load.accepted
    finally:
        for client in (load, fresh):
            if client is not None:
                client.stop_ev.set()
        g.close()
        tmp.cleanup()


def test_death_within_probation_rolls_back():
    """A new generation that is killed just after it was ready (within the
    probation) is rolled back; the old one never stopped serving."""
    g = Graced("--drain-delay", "0.2")
    try:
        # The new generation is killed once the supervisor has its READY,
        # well within the one-second probation.
        start = len(g.lines)
        g.signal(signal.SIGUSR2)
        ready = g.wait_event("generation_ready", start=start,
                             pred=lambda l: l["generation"] == 2)
        os.kill(ready["pid"], signal.SIGKILL)
        failed = g.wait_event("upgrade_failed", start=start)
        assert failed["reason"] == \
            "killed by signal 9 after it was ready", failed
        assert not g.events("upgrade_ready"), g.log_text()
        assert generation(g) == 1
        assert g.proc.poll() is None
        g.signal(signal.SIGTERM)
        assert g.wait_exit() == 0, g.log_text()
    finally:
        g.close()


def test_one_upgrade_at_a_time():
    """A second upgrade while one runs is refused with the reason."""
    tmp = tempfile.TemporaryDirectory(prefix="graced-exe-")
    exe = os.path.join(tmp.name, "graced")
    shutil.copy(harness.GRACED, exe)
    g = Graced("--upgrade-timeout", "3", "--drain-delay", "0.2",
               binary=exe)
    try:
        # A generation that takes its time to start keeps the first
        # upgrade running while the second is asked for.
        replace_exe(exe, "#!/bin/sh\nexec sleep 600\n")
        start = len(g.lines)
        g.signal(signal.SIGUSR2)
        g.wait_event("upgrade_begin", start=start)
        p = graced_upgrade(g)
        assert p.returncode == 1, (p.returncode, p.stdout, p.stderr)
        assert "409" in p.stderr and "in progress" in p.stderr, p.stderr
        refused = g.wait_event("upgrade_refused", start=start)
        assert refused["by"] == "admin", refused
        g.signal(signal.SIGUSR2)
        refused = g.wait_event("upgrade_refused", start=start,
                               pred=lambda l: l["by"] == "SIGUSR2")
        assert "in progress" in refused["reason"], refused
        g.wait_event("upgrade_failed", start=start, timeout=10)
        assert generation(g) == 1
        g.signal(signal.SIGTERM)
        assert g.wait_exit() == 0, g.log_text()
    finally:
        g.close()
        tmp.cleanup()


def test_drain_during_probation_ends_the_service():
    """The current generation drains by itself while the next one is on
    probation (its admin listener got POST /admin/drain; here, SIGTERM to
    it): the upgrade fails, the next one drains too, and the service exits
    0 with no process left."""
    g = Graced("--drain-delay", "0.2")
    try:
        first = g.wait_event("generation_ready")
        start = len(g.lines)
        g.signal(signal.SIGUSR2)
        second = g.wait_event("generation_ready", start=start)
        os.kill(first["pid"], signal.SIGTERM)
        failed = g.wait_event("upgrade_failed", start=start)
        assert failed["reason"] == "the service is stopping", failed
        assert g.wait_exit() == 0, g.log_text()
        for pid in (first["pid"], second["pid"]):
            assert pid_gone(pid), "generation pid %d is still running" % pid
    finally:
        g.close()


def test_supervisor_off():
    """--supervisor off: one process, which refuses to upgrade (501) and
    logs SIGUSR2 instead of dying of it."""
    g = Graced("--supervisor", "off", "--drain-delay", "0.2")
    try:
        p = graced_upgrade(g)
        assert p.returncode == 1 and "501" in p.stderr, (p.returncode,
                                                          p.stderr)
        g.signal(signal.SIGUSR2)
        refused = g.wait_event("upgrade_refused")
        assert "--supervisor off" in refused["reason"], refused
        assert generation(g) == 1
        g.signal(signal.SIGTERM)
        assert g.wait_exit() == 0, g.log_text()
    finally:
        g.close()


def test_generation_death_is_the_service_exit():
    """The current generation killed: the supervisor exits with 128 + the
    signal, as a shell reports it, so a restart policy takes over."""
    g = Graced()
    try:
        status, body = g.json("GET", "/healthz")
        assert status == 200
        children = open("/proc/%d/task/%d/children" % (
            g.proc.pid, g.proc.pid)).read().split()
        assert len(children) == 1, children
        os.kill(int(children[0]), signal.SIGKILL)
        assert g.wait_exit() == 128 + signal.SIGKILL, g.log_text()
        gone = g.events("generation_exit")
        assert gone and gone[0]["how"] == "killed by signal 9", gone
    finally:
        g.close()


def test_supervisor_killed_generation_drains():
    """The supervisor killed with SIGKILL: its generation sees the control
    link close, drains and exits by itself."""
    g = Graced("--drain-delay", "0.2")
    try:
        children = open("/proc/%d/task/%d/children" % (
            g.proc.pid, g.proc.pid)).read().split()
        g.proc.kill()
        g.wait_event("drain_begin",
                     pred=lambda l: l.get("cause") == "supervisor gone")
        assert pid_gone(int(children[0])), "the generation did not exit"
    finally:
        g.close()


if __name__ == "__main__":
    run([
        test_ten_upgrades_under_load_workers1,
        test_ten_upgrades_under_load_workers2,
        test_rollback_keeps_the_old_generation,
        test_death_within_probation_rolls_back,
        test_one_upgrade_at_a_time,
        test_drain_during_probation_ends_the_service,
        test_supervisor_off,
        test_generation_death_is_the_service_exit,
        test_supervisor_killed_generation_drains,
    ])
