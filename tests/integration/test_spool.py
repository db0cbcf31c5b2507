"""Spool faults (DESIGN.md, "Hostile clients and faults"): the spool answers
503 when it cannot take an event (full, over a file-size limit, deleted),
never 202 for an event that is not in the file, and leaves nothing partial
behind; /healthz names the spool's state and turns unready with it, /metrics
counts the errors; --spool-sync batch fdatasyncs before the 202s.
"""
import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading

from harness import TIMEOUT, Graced, SkipTest, run

FAST = ("--drain-delay", "0.2", "--shutdown-timeout", "10")


def post(g, event):
    status, _, data = g.request("POST", "/v1/events",
                                body=json.dumps(event).encode(),
                                headers={"Content-Type": "application/json"})
    return status, json.loads(data)


def healthz(g, admin=False):
    status, _, data = g.request("GET", "/healthz", admin=admin)
    return status, json.loads(data)


def metric(g, sample):
    """The value of one sample line of /metrics, e.g.
    'graced_spool_errors_total{error="full"}'; None if absent."""
    text = g.request("GET", "/metrics")[2].decode()
    for line in text.splitlines():
        if line.startswith(sample + " "):
            return float(line.split()[-1])
    return None


def spool_events(path):
    """Every line of the spool, parsed: a partial line fails here."""
    with open(path, "rb") as f:
        data = f.read()
    assert data == b"" or data.endswith(b"\n"), data[-200:]
    return [json.loads(l) for l in data.decode().splitlines()]


def fill(g, size, limit=500):
    """Posts events of about size bytes, one request each, until one is
    refused; returns (the accepted events, the refusal's status and body)."""
    accepted = []
    for i in range(limit):
        ev = {"n": i, "pad": "x" * size}
        status, body = post(g, ev)
        if status != 202:
            return accepted, status, body
        assert body == {"accepted": 1}, body
        accepted.append(ev)
    raise AssertionError("no refusal after %d events" % limit)


def assert_full(g, accepted, status, body):
    assert g.proc.poll() is None, "graced died:\n" + g.log_text()
    assert status == 503 and body["error"] == "spool full", (status, body)
    # Each accepted event exactly once, in order, and nothing else: the
    # refused batch, also its part written before the limit, is gone.
    assert spool_events(g.spool) == accepted
    for admin in (False, True):
        status, h = healthz(g, admin)
        assert status == 503, (status, h)
        assert h["status"] == "unready" and h["spool"] == "full", h
    assert g.request("GET", "/livez")[0] == 200
    assert metric(g, 'graced_spool_state{state="full"}') == 1
    assert metric(g, 'graced_spool_state{state="ok"}') == 0
    assert metric(g, 'graced_spool_errors_total{error="full"}') >= 1


def assert_ok(g):
    status, h = healthz(g)
    assert status == 200 and h["status"] == "ok" and h["spool"] == "ok", h
    assert metric(g, 'graced_spool_state{state="ok"}') == 1


def test_healthz_and_metrics_name_the_spool():
    g = Graced(*FAST)
    try:
        assert_ok(g)
        assert metric(g, 'graced_spool_errors_total{error="io"}') == 0
        assert metric(g, "graced_spool_syncs_total") == 0
    finally:
        g.close()


def test_file_size_limit_answers_503_and_leaves_nothing_partial():
    # 4000 is no multiple of the line size: the write that crosses the
    # limit is partial, then EFBIG (SIGXFSZ would have killed graced).
    g = Graced(*FAST, wrap=["prlimit", "--fsize=4000"])
    try:
        accepted, status, body = fill(g, 150)
        assert accepted, "not even one event fit"
        assert_full(g, accepted, status, body)
        # Again: each batch tries again, and is refused again.
        assert post(g, {"n": -1, "pad": "x" * 150})[0] == 503
        # A smaller event fits in what is left: the spool is ok again.
        small = {"n": "small"}
        assert post(g, small) == (202, {"accepted": 1})
        assert spool_events(g.spool) == accepted + [small]
        assert_ok(g)
        g.wait_event("spool_state", pred=lambda l: l["state"] == "ok")
        g.signal(signal.SIGTERM)
        assert g.wait_exit() == 0
    finally:
        g.close()


@contextlib.contextmanager
def small_tmpfs(size):
    """A tmpfs of size (e.g. "64k") mounted on a new directory: a disk
    that fills up. Root only."""
    if os.geteuid() != 0:
        raise SkipTest("mounting a small tmpfs needs root")
    mnt = tempfile.mkdtemp(prefix="graced-tmpfs-")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=" + size,
                        "tmpfs", mnt], capture_output=True)
    if r.returncode != 0:
        os.rmdir(mnt)
        raise SkipTest("cannot mount tmpfs: %s" % r.stderr.decode().strip())
    try:
        yield mnt
    finally:
        # Lazily: a failure here must not hide the test's own.
        subprocess.run(["umount", "-l", mnt])
        os.rmdir(mnt)


def test_full_disk_answers_503_until_space_frees():
    with small_tmpfs("64k") as mnt:
        full_disk_answers_503_until_space_frees(mnt)


def full_disk_answers_503_until_space_frees(mnt):
    g = None
    try:
        # Something to delete later, to free space.
        with open(os.path.join(mnt, "filler"), "wb") as f:
            f.write(b"x" * 16384)
        g = Graced(*FAST, spool=os.path.join(mnt, "events.jsonl"))
        accepted, status, body = fill(g, 3000)
        assert_full(g, accepted, status, body)
        g.wait_event("spool_state", pred=lambda l: l["state"] == "full"
                     and "space" in l["error"])
        os.unlink(os.path.join(mnt, "filler"))
        ev = {"n": "after", "pad": "x" * 3000}
        assert post(g, ev) == (202, {"accepted": 1})
        assert spool_events(g.spool) == accepted + [ev]
        assert_ok(g)
    finally:
        if g is not None:
            g.close()


@contextlib.contextmanager
def own_dir_spool():
    """A graced whose spool is in a directory of its own, with one event
    accepted: yields (graced, the directory)."""
    top = tempfile.mkdtemp(prefix="graced-spool-")
    d = os.path.join(top, "spool")
    os.mkdir(d)
    g = None
    try:
        g = Graced("--drain-delay", "5",
                   spool=os.path.join(d, "events.jsonl"))
        assert post(g, {"n": 0}) == (202, {"accepted": 1})
        yield g, d
    finally:
        if g is not None:
            g.close()
        shutil.rmtree(top)


def assert_gone(g):
    status, body = post(g, {"n": "lost"})
    assert status == 503 and body["error"] == "spool gone", (status, body)
    status, h = healthz(g)
    assert status == 503, (status, h)
    assert h["status"] == "unready" and h["spool"] == "gone", h
    assert metric(g, 'graced_spool_state{state="gone"}') == 1
    assert metric(g, 'graced_spool_errors_total{error="gone"}') >= 1
    assert g.request("GET", "/livez")[0] == 200


def assert_new_file_takes_events(g):
    """The next event is accepted into a file that can be found (not the
    deleted one), alone there."""
    ev = {"n": 1}
    assert post(g, ev) == (202, {"accepted": 1})
    assert spool_events(g.spool) == [ev]
    assert_ok(g)


def test_deleted_spool_is_recreated():
    with own_dir_spool() as (g, d):
        os.unlink(g.spool)
        assert_new_file_takes_events(g)
        g.wait_event("spool_reopened", pred=lambda l:
                     l.get("cause") == "unlinked")


def test_spool_gone_until_next_batch_can_recreate_it():
    with own_dir_spool() as (g, d):
        shutil.rmtree(d)
        assert_gone(g)
        os.mkdir(d)
        assert_new_file_takes_events(g)


def test_spool_gone_on_sighup_until_a_reopen_succeeds():
    with own_dir_spool() as (g, d):
        shutil.rmtree(d)
        n = len(g.lines)
        g.signal(signal.SIGHUP)
        g.wait_event("spool_reopen_failed", start=n)
        g.wait_event("spool_state", start=n,
                     pred=lambda l: l["state"] == "gone")
        status, h = healthz(g)
        assert status == 503 and h["spool"] == "gone", h
        assert_gone(g)
        os.mkdir(d)
        n = len(g.lines)
        g.signal(signal.SIGHUP)
        g.wait_event("spool_reopened", start=n)
        assert_ok(g)
        assert_new_file_takes_events(g)


def test_draining_wins_over_unready():
    with own_dir_spool() as (g, d):
        shutil.rmtree(d)
        assert_gone(g)
        g.signal(signal.SIGTERM)
        g.wait_event("drain_begin")
        status, h = healthz(g, admin=True)
        assert status == 503 and h["status"] == "draining", h
        assert h["spool"] == "gone", h


def test_sync_batch_syncs_before_202():
    g = Graced(*FAST, "--spool-sync", "batch", "--workers", "2")
    try:
        sent, results = [], []
        lock = threading.Lock()

        def client(k):
            for i in range(20):
                ev = {"client": k, "i": i}
                r = post(g, ev)
                with lock:
                    sent.append(ev)
                    results.append(r)

        threads = [threading.Thread(target=client, args=(k,))
                   for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(TIMEOUT)
        assert all(r == (202, {"accepted": 1}) for r in results), results
        got = spool_events(g.spool)
        key = lambda e: (e["client"], e["i"])
        assert sorted(got, key=key) == sorted(sent, key=key)
        # One fdatasync per batch: at least one, at most one per request.
        syncs = metric(g, "graced_spool_syncs_total")
        assert 1 <= syncs <= len(sent), syncs
        assert_ok(g)
    finally:
        g.close()


def test_spool_sync_flag_checked():
    for args, env in ((["--spool-sync", "always"], {}),
                      ([], {"GRACED_SPOOL_SYNC": "fsync"})):
        g = Graced(*args, env=env, wait=False)
        try:
            assert g.wait_exit() == 2
            out = [l.get("raw", "") for l in g.lines]
            assert len(out) == 1 and "--spool-sync" in out[0], out
        finally:
            g.close()


def test_two_writers_on_a_full_disk_lose_nothing():
    """Two processes append to one spool, as two generations do during an
    upgrade, until the disk is full: a batch that fails is taken back, and
    with it nothing the other process had already answered 202 for."""
    with small_tmpfs("256k") as mnt:
        two_writers_on_a_full_disk(mnt)


def two_writers_on_a_full_disk(mnt):
    spool = os.path.join(mnt, "events.jsonl")
    graceds = []
    accepted = []
    lock = threading.Lock()

    def writer(g, tag):
        refused = 0
        for i in range(3000):
            ev = {"id": "%s-%d" % (tag, i), "pad": "x" * (50 + i * 37 % 1500)}
            status, body = post(g, ev)
            if status == 202:
                with lock:
                    accepted.append(ev["id"])
                refused = 0
            else:
                assert status == 503, (status, body)
                refused += 1
                if refused == 20:
                    return

    try:
        graceds = [Graced(*FAST, spool=spool) for _ in range(2)]
        for rnd in range(3):
            filler = os.path.join(mnt, "filler")
            with open(filler, "wb") as f:
                f.write(b"x" * 65536)
            threads = [threading.Thread(target=writer,
                                        args=(g, "%d-%d-%d" % (rnd, n, t)))
                       for n, g in enumerate(graceds) for t in range(3)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
            assert not any(t.is_alive() for t in threads)
            os.unlink(filler)
        ids = [e["id"] for e in spool_events(spool)]
        print("  %d events answered 202, %d in the spool" % (
            len(accepted), len(ids)))
        assert len(ids) == len(set(ids)), "an event is in the spool twice"
        assert set(ids) == set(accepted), (
            "%d answered 202 but not in the spool" % len(
                set(accepted) - set(ids)))
    finally:
        for g in graceds:
            g.close()


if __name__ == "__main__":
    run([
        test_healthz_and_metrics_name_the_spool,
        test_file_size_limit_answers_503_and_leaves_nothing_partial,
        test_full_disk_answers_503_until_space_frees,
        test_two_writers_on_a_full_disk_lose_nothing,
        test_deleted_spool_is_recreated,
        test_spool_gone_until_next_batch_can_recreate_it,
        test_spool_gone_on_sighup_until_a_reopen_succeeds,
        test_draining_wins_over_unready,
        test_sync_batch_syncs_before_202,
        test_spool_sync_flag_checked,
    ])
