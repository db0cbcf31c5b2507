"""Descriptor exhaustion: graced runs under `prlimit --nofile`, clients hold
more idle connections than it may open. Neither listener may crash or spin;
each pauses, counts the failures in /metrics, logs them a few times a second
at most, and serves again once descriptors free up. A drain started at the
limit still serves the queued requests and exits 0."""
import os
import re
import shutil
import time

from harness import Graced, SkipTest, recv_response, run, wait_closed

NOFILE = 64
IDLE = 2 * NOFILE  # idle connections opened: well past the limit
WRAP = ["prlimit", "--nofile=%d:%d" % (NOFILE, NOFILE), "--"]
TICKS = os.sysconf("SC_CLK_TCK")


def start(workers, *args):
    if shutil.which("prlimit") is None:
        raise SkipTest("prlimit not installed")
    return Graced("--workers", str(workers), "--drain-delay", "0", *args,
                  wrap=WRAP)


def cpu_seconds(g):
    """utime + stime of the serving process, all threads."""
    with open("/proc/%d/stat" % g.server_pid()) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def exhaust(g, admin=False):
    """Opens IDLE idle connections and waits for the listener to report
    that accept() failed. Returns the sockets."""
    socks = [g.connect(admin=admin) for _ in range(IDLE)]
    g.wait_event("accept_failed", pred=lambda l: l.get("listener") ==
                 ("admin" if admin else "public"))
    return socks


def check_no_spin(g, listener):
    """At the limit for a second: the process is alive, uses little CPU and
    logs accept_failed about once a second at most."""
    first = g.events("accept_failed")[0]["_at"]
    before = cpu_seconds(g)
    t0 = time.monotonic()
    # Waits a second on an event that must not come: graced exiting.
    try:
        g.wait_exit(timeout=1.0)
    except AssertionError:
        pass
    assert g.proc.poll() is None, "graced died at the limit:\n" + \
        g.log_text()
    used = cpu_seconds(g) - before
    elapsed = time.monotonic() - t0
    assert used < 0.25 * elapsed, "%.2fs of CPU in %.2fs" % (used, elapsed)
    lines = [l for l in g.events("accept_failed")
             if l["listener"] == listener]
    span = time.monotonic() - first
    # One line a second per listener (each worker's listener logs its own).
    assert len(lines) <= (span + 1.5) * 2, "%d lines in %.1fs" % (
        len(lines), span)
    assert all(l["errno"] == "EMFILE" for l in lines), lines[0]
    # Nothing but graced's own JSON lines: no libevent warning per accept.
    with g.cond:
        raw = [l["raw"] for l in g.lines if "raw" in l]
    assert not raw, raw[:3]


def metric(text, listener, errno="EMFILE"):
    m = re.search(r'^graced_accept_errors_total\{listener="%s",'
                  r'errno="%s"\} (\d+)$' % (listener, errno), text, re.M)
    assert m, text
    return int(m.group(1))


def release_and_check(g, socks, listener):
    """Closes the idle connections; serving resumes within a bound and
    /metrics counts the failures."""
    for s in socks:
        s.close()
    t0 = time.monotonic()
    status, _, _ = g.request("GET", "/livez")
    assert status == 200
    assert time.monotonic() - t0 < 2.0, "took %.2fs" % (time.monotonic() - t0)
    status, _, body = g.request("GET", "/metrics", admin=True)
    assert status == 200
    assert metric(body.decode(), listener) > 0
    assert g.proc.poll() is None


def public_at_limit(workers):
    g = start(workers)
    try:
        socks = exhaust(g)
        check_no_spin(g, "public")
        release_and_check(g, socks, "public")
        g.signal()
        assert g.wait_exit() == 0
    finally:
        g.close()


def test_public_limit_one_worker():
    public_at_limit(1)


def test_public_limit_two_workers():
    public_at_limit(2)


def admin_at_limit(workers):
    g = start(workers)
    try:
        socks = exhaust(g, admin=True)
        check_no_spin(g, "admin")
        release_and_check(g, socks, "admin")
        g.signal()
        assert g.wait_exit() == 0
    finally:
        g.close()


def test_admin_limit_one_worker():
    admin_at_limit(1)


def test_admin_limit_two_workers():
    admin_at_limit(2)


def drain_at_limit(workers):
    g = start(workers, "--first-byte-grace", "0.3")
    try:
        idle = exhaust(g)
        # Queued behind the limit, each with a whole request.
        waiting = [g.connect() for _ in range(5)]
        for s in waiting:
            s.sendall(b"GET /livez HTTP/1.1\r\nHost: t\r\n\r\n")
        g.signal()
        g.wait_event("drain_stop")
        # The idle connections graced holds are closed at stop (after the
        # first-byte grace); those still queued are ours to close.
        closed = sum(wait_closed(s, timeout=3.0 if i == 0 else 0.01)
                     for i, s in enumerate(idle))
        assert closed >= NOFILE // 2, "graced closed %d" % closed
        for s in idle:
            s.close()
        for s in waiting:
            status, _, _ = recv_response(s)
            assert status == 200
            s.close()
        assert g.wait_exit() == 0, g.log_text()
    finally:
        g.close()


def test_drain_at_limit_one_worker():
    drain_at_limit(1)


def test_drain_at_limit_two_workers():
    drain_at_limit(2)


if __name__ == "__main__":
    run([test_public_limit_one_worker, test_public_limit_two_workers,
         test_admin_limit_one_worker, test_admin_limit_two_workers,
         test_drain_at_limit_one_worker, test_drain_at_limit_two_workers])
