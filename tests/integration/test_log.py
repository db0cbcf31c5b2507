"""The log stream (DESIGN.md, "Hostile clients and faults"): a log reader
that stops must not stop serving, /healthz or the drain, and lines it
missed are counted in /metrics; the access line's fields, the request id
echoed on every reply, the probe flag, the replies evhttp sends itself, and
escaping of what clients send.
"""
import http.client
import json
import os
import select
import signal
import subprocess
import tempfile
import threading
import time

from harness import GRACED, TIMEOUT, Graced, recv_response, run

HOST = "127.0.0.1"


def request_line(g, pred, start=0):
    return g.wait_event("request", pred=pred, start=start)


def raw_exchange(g, data):
    """Sends raw bytes on a new connection, returns (status, headers)."""
    s = g.connect()
    try:
        s.sendall(data)
        status, hdrs, _ = recv_response(s)
        return status, hdrs
    finally:
        s.close()


# ---------------------------------------------------------------- stall

class StalledFifo:
    """graced's --log-file is a FIFO that the test opens for reading, reads
    up to the "serving" line, and then leaves unread until resume()."""

    def __init__(self, *args):
        self.tmp = tempfile.TemporaryDirectory(prefix="graced-log-")
        self.path = os.path.join(self.tmp.name, "log.fifo")
        os.mkfifo(self.path)
        # Opened before graced opens its end, so its open does not wait.
        self.fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
        self.g = Graced("--log-file", self.path, *args, wait=False)
        self.buf = b""
        serving = self.wait_line(lambda l: l.get("event") == "serving")
        self.g.port = int(serving["listen"].rsplit(":", 1)[1])
        self.g.admin_port = int(serving["admin"].rsplit(":", 1)[1])

    def read_some(self, timeout):
        r, _, _ = select.select([self.fd], [], [], timeout)
        if not r:
            return False
        try:
            chunk = os.read(self.fd, 1 << 20)
        except BlockingIOError:
            return False
        self.buf += chunk
        return bool(chunk)

    def wait_line(self, pred, timeout=TIMEOUT):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for raw in self.buf.split(b"\n")[:-1]:
                line = json.loads(raw)
                if pred(line):
                    return line
            self.read_some(0.1)
        raise AssertionError("no such line in the log FIFO")

    def drain_all(self, timeout=TIMEOUT):
        """Reads until graced closes its end (EOF) or timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.read_some(0.2) and self.g.proc.poll() is not None:
                break
        return self.buf

    def close(self):
        self.g.close()
        os.close(self.fd)
        self.tmp.cleanup()


def hammer(g, total, conns=4):
    """total keep-alive GET /livez over conns connections, in threads."""
    errors = []

    def one(n):
        c = http.client.HTTPConnection(HOST, g.port, timeout=TIMEOUT)
        try:
            for _ in range(n):
                c.request("GET", "/livez")
                r = c.getresponse()
                r.read()
                if r.status != 200:
                    errors.append(r.status)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))
        finally:
            c.close()
    threads = [threading.Thread(target=one, args=(total // conns,))
               for _ in range(conns)]
    for t in threads:
        t.start()
    return threads, errors


def finish(threads, errors):
    """Waits for hammer's threads; every request must have been answered."""
    for t in threads:
        t.join(60)
        assert not t.is_alive(), "requests stopped being answered"
    assert errors == [], errors[:5]


def healthz_quickly(g):
    """/healthz answers 200 within 2 s, whatever the log sink is doing."""
    t0 = time.monotonic()
    assert g.request("GET", "/healthz")[0] == 200
    assert time.monotonic() - t0 < 2.0


def metric(g, name):
    status, _, body = g.request("GET", "/metrics", admin=True)
    assert status == 200
    for line in body.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError("no %s in /metrics" % name)


def test_stalled_log_reader_keeps_serving_and_counts_drops():
    f = StalledFifo("--drain-delay", "0")
    g = f.g
    try:
        # 6000 access lines are far more than the pipe (64 KiB) and the
        # log queue hold.
        threads, errors = hammer(g, 6000)
        # /healthz answers quickly during the load and after it.
        for _ in range(5):
            healthz_quickly(g)
        finish(threads, errors)
        healthz_quickly(g)
        dropped = metric(g, "graced_log_lines_dropped_total")
        assert dropped > 0, dropped
        # The reader comes back: lines flow again, each one whole. The
        # queue may still be full when the first request after the resume
        # is logged (that line is then dropped and counted), so ask until
        # one line gets through, within a bound.
        for i in range(50):
            path = "/nope-after-resume-%d" % i
            assert g.request("GET", path)[0] == 404
            try:
                f.wait_line(lambda l, p=path: l.get("path") == p, timeout=1)
                break
            except AssertionError:
                continue
        else:
            raise AssertionError("no line reached the resumed reader")
        g.signal(signal.SIGTERM)
        data = f.drain_all()
        assert g.wait_exit() == 0
        lines = data.split(b"\n")
        assert lines[-1] == b"", "a partial last line: %r" % lines[-1][:80]
        events = [json.loads(l)["event"] for l in lines[:-1]]
        assert events[-1] == "stopped", events[-5:]
    finally:
        f.close()


def test_sigterm_ends_process_while_log_reader_is_stalled():
    f = StalledFifo("--drain-delay", "0")
    g = f.g
    try:
        threads, errors = hammer(g, 4000)
        finish(threads, errors)
        assert metric(g, "graced_log_lines_dropped_total") > 0
        # Nobody reads the log through the whole drain and stop: the
        # queued lines get at most a second, then the process exits 0.
        t0 = time.monotonic()
        g.signal(signal.SIGTERM)
        assert g.wait_exit(timeout=10) == 0
        assert time.monotonic() - t0 < 5.0
    finally:
        f.close()


def test_stalled_stderr_pipe():
    """The case from the field: stderr is a pipe whose reader stops after
    the first line (a stuck log shipper)."""
    tmp = tempfile.TemporaryDirectory(prefix="graced-log-")
    proc = subprocess.Popen(
        [GRACED, "serve", "--listen", "127.0.0.1:0", "--admin-listen",
         "127.0.0.1:0", "--workers", "1", "--drain-delay", "0",
         "--spool", os.path.join(tmp.name, "events.jsonl")],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE)
    try:
        # The supervisor's generation_ready may come first: two
        # processes share the pipe. Then the reader stops.
        for _ in range(3):
            serving = json.loads(proc.stderr.readline())
            if serving["event"] == "serving":
                break
        assert serving["event"] == "serving", serving
        g = Graced.__new__(Graced)  # only its client helpers
        g.port = int(serving["listen"].rsplit(":", 1)[1])
        g.admin_port = int(serving["admin"].rsplit(":", 1)[1])
        threads, errors = hammer(g, 4000)
        finish(threads, errors)
        healthz_quickly(g)
        assert metric(g, "graced_log_lines_dropped_total") > 0
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()
        tmp.cleanup()


# ---------------------------------------------------------------- fields

def test_access_line_fields():
    g = Graced()
    try:
        c = http.client.HTTPConnection(HOST, g.port, timeout=TIMEOUT)
        c.connect()
        local = "%s:%d" % c.sock.getsockname()[:2]
        body = b'{"user":"ann","action":"login"}'
        c.request("POST", "/v1/events?src=test", body=body,
                  headers={"User-Agent": "fields-test/1.0",
                           "Content-Type": "application/json"})
        r = c.getresponse()
        out = r.read()
        assert r.status == 202
        rid = r.getheader("X-Request-Id")
        c.close()
        l = request_line(g, lambda l: l.get("path") == "/v1/events?src=test")
        assert l["client"] == local, (l, local)
        assert l["method"] == "POST"
        assert l["status"] == 202
        assert l["bytes_in"] == len(body), l
        assert l["bytes_out"] == len(out), l
        assert isinstance(l["ms"], float) and 0 <= l["ms"] < 5000, l
        assert l["user_agent"] == "fields-test/1.0"
        assert rid and l["request_id"] == rid, (l, rid)
    finally:
        g.close()


def test_request_id_echoed_from_client():
    g = Graced()
    try:
        status, hdrs, _ = g.request("GET", "/livez",
                                    headers={"X-Request-Id": "abc-123.x"})
        assert status == 200
        assert hdrs["x-request-id"] == "abc-123.x"
        l = request_line(g, lambda l: l.get("request_id") == "abc-123.x")
        assert l["path"] == "/livez"
    finally:
        g.close()


def test_request_id_generated_on_every_reply():
    g = Graced()
    try:
        ids = []
        for method, path, want in [("GET", "/livez", 200),
                                   ("GET", "/no-such", 404),
                                   ("DELETE", "/healthz", 405),
                                   ("POST", "/v1/events", 400),
                                   ("GET", "/healthz", 200)]:
            status, hdrs, _ = g.request(method, path, body=b"{bad"
                                        if method == "POST" else None)
            assert status == want, (path, status)
            assert "x-request-id" in hdrs, (path, hdrs)
            ids.append(hdrs["x-request-id"])
        assert len(set(ids)) == len(ids), ids
        for rid in ids:
            assert 1 <= len(rid) <= 128 and rid.isprintable(), rid
        request_line(g, lambda l: l.get("request_id") == ids[-1])
        logged = [l["request_id"] for l in g.events("request")]
        assert logged == ids, (logged, ids)
    finally:
        g.close()


def test_request_id_on_admin_replies():
    g = Graced()
    try:
        status, hdrs, _ = g.request("GET", "/livez", admin=True,
                                    headers={"X-Request-Id": "adm-1"})
        assert status == 200 and hdrs.get("x-request-id") == "adm-1", hdrs
        status, hdrs, _ = g.request("GET", "/nope", admin=True)
        assert status == 404 and hdrs.get("x-request-id"), hdrs
    finally:
        g.close()


def test_request_id_hostile_is_replaced():
    g = Graced()
    try:
        # A control character breaks the framing rules: 400, with an id.
        hostile = [(b"A" * 129, 200),                 # too long
                   (b"a\x01b", 400),                  # control character
                   (b"caf\xc3\xa9", 200),             # not ASCII
                   (b'x"}\\', 200), ]                 # fine: printable
        seen = []
        for value, want in hostile:
            status, hdrs = raw_exchange(
                g, b"GET /livez HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                b"X-Request-Id: " + value + b"\r\n\r\n")
            assert status == want, (value, status)
            seen.append(hdrs["x-request-id"])
        for (value, _), rid in zip(hostile[:3], seen[:3]):
            assert rid.encode() != value, rid
            assert 1 <= len(rid) <= 128 and rid.isprintable(), rid
        assert seen[3] == 'x"}\\', seen[3]
        # The log line stays valid JSON with the same ids.
        request_line(g, lambda l: l.get("request_id") == seen[3])
        assert [l["request_id"] for l in g.events("request")] == seen
    finally:
        g.close()


def test_hostile_user_agent_and_path_escaped():
    g = Graced()
    try:
        ua = b'ua "quoted" \\ back \xff\xfe caf\xc3\xa9 \x7f end'
        raw_exchange(g, b"GET /livez?q=%22\"\\ HTTP/1.1\r\nHost: x\r\n"
                     b"Connection: close\r\nUser-Agent: " + ua + b"\r\n\r\n")
        l = request_line(g, lambda l: l.get("user_agent", "").endswith("end"))
        assert l["user_agent"] == ('ua "quoted" \\ back \ufffd\ufffd '
                                   'caf\u00e9 \x7f end'), l["user_agent"]
        assert l["path"] == '/livez?q=%22"\\', l["path"]
        # Every line of the log parsed as JSON.
        assert all("raw" not in x for x in g.lines), g.log_text()
    finally:
        g.close()


def test_probe_flag_leaves_probes_out():
    g = Graced("--access-log-probes", "off")
    try:
        for path in ("/healthz", "/livez", "/after-probes"):
            g.request("GET", path)
        request_line(g, lambda l: l.get("path") == "/after-probes")
        paths = [l["path"] for l in g.events("request")]
        assert paths == ["/after-probes"], paths
    finally:
        g.close()
    g = Graced()
    try:
        g.request("GET", "/healthz")
        request_line(g, lambda l: l.get("path") == "/healthz")
    finally:
        g.close()


def test_probe_flag_bad_value_and_environment():
    r = subprocess.run([GRACED, "serve", "--access-log-probes", "maybe"],
                       stdin=subprocess.DEVNULL, capture_output=True,
                       timeout=TIMEOUT)
    assert r.returncode == 2, r
    assert b"--access-log-probes" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    g = Graced(env={"GRACED_ACCESS_LOG_PROBES": "off"})
    try:
        g.request("GET", "/livez")
        g.request("GET", "/after-env")
        request_line(g, lambda l: l.get("path") == "/after-env")
        assert [l["path"] for l in g.events("request")] == ["/after-env"]
    finally:
        g.close()


def test_evhttp_413_and_400_are_logged():
    g = Graced("--max-body", "1K")
    try:
        s = g.connect()
        s.sendall(b"POST /v1/events HTTP/1.1\r\nHost: x\r\n"
                  b"Content-Length: 100000\r\n\r\n")
        status, _, _ = recv_response(s)
        s.close()
        assert status == 413
        l = request_line(g, lambda l: l.get("status") == 413)
        assert l["client"].startswith("127.0.0.1:")
        assert l.get("request_id")
        status, _ = raw_exchange(g, b"NOT A REQUEST LINE AT ALL\r\n\r\n")
        assert status == 400
        request_line(g, lambda l: l.get("status") == 400)
    finally:
        g.close()


def test_text_format_access_line():
    g = Graced("--log-format", "text", wait=False)
    try:
        serving = None
        deadline = time.monotonic() + TIMEOUT
        while serving is None and time.monotonic() < deadline:
            with g.cond:
                for l in g.lines:
                    if " serving " in l.get("raw", ""):
                        serving = l["raw"]
                g.cond.wait(0.1)
        assert serving, g.log_text()
        port = serving.split("listen=")[1].split()[0].rsplit(":", 1)[1]
        g.port = int(port)
        g.request("GET", "/text-line", headers={"User-Agent": "text-ua"})
        deadline = time.monotonic() + TIMEOUT
        line = None
        while line is None and time.monotonic() < deadline:
            with g.cond:
                for l in g.lines:
                    if "path=/text-line" in l.get("raw", ""):
                        line = l["raw"]
                g.cond.wait(0.1)
        assert line, g.log_text()
        assert " request " in line and "status=404" in line, line
        assert "method=GET" in line and "request_id=" in line, line
    finally:
        g.close()


if __name__ == "__main__":
    run([test_stalled_log_reader_keeps_serving_and_counts_drops,
         test_sigterm_ends_process_while_log_reader_is_stalled,
         test_stalled_stderr_pipe,
         test_access_line_fields, test_request_id_echoed_from_client,
         test_request_id_generated_on_every_reply,
         test_request_id_on_admin_replies,
         test_request_id_hostile_is_replaced,
         test_hostile_user_agent_and_path_escaped,
         test_probe_flag_leaves_probes_out,
         test_probe_flag_bad_value_and_environment,
         test_evhttp_413_and_400_are_logged,
         test_text_format_access_line])
