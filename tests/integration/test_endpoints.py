"""Endpoints and error replies of a serving instance (DESIGN.md,
"Interfaces"): health, liveness, metrics, HEAD, JSON errors (400, 404, 405
with Allow, 413, 503 past --max-connections), message framing (duplicate
Content-Length, Content-Length with Transfer-Encoding), HTTP/1.0,
keep-alive, pipelining, the admin listener and the access log.
"""
import http.client
import json
import re
import time

from harness import TIMEOUT, Graced, run, wait_closed

HOST = "127.0.0.1"


# ---------------------------------------------------------------- helpers

class Raw:
    """A raw HTTP/1.x client on one socket that keeps whatever bytes follow
    a response, so pipelined responses can be read one after the other."""

    def __init__(self, g, admin=False):
        self.sock = g.connect(admin=admin)
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data)

    def request(self, method, path, body=None, headers=(), version="1.1"):
        head = "%s %s HTTP/%s\r\nHost: 127.0.0.1\r\n" % (method, path,
                                                        version)
        for h in headers:
            head += h + "\r\n"
        if body is not None:
            head += "Content-Length: %d\r\n" % len(body)
        self.send(head.encode() + b"\r\n" + (body or b""))

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed by the server; unread: %r" %
                                  self.buf)
        self.buf += chunk

    def response(self, head_only=False, timeout=TIMEOUT):
        """Reads one response: (status, headers with lower-case names,
        body). head_only for the reply to HEAD (no body whatever the
        headers say). Without Content-Length the body runs to EOF."""
        self.sock.settimeout(timeout)
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        m = re.match(r"HTTP/1\.[01] (\d{3}) ", lines[0] + " ")
        assert m, "not a status line (stray body bytes?): %r" % lines[0]
        status = int(m.group(1))
        hdrs = {}
        for line in lines[1:]:
            k, v = line.split(":", 1)
            k = k.strip().lower()
            hdrs[k] = hdrs[k] + ", " + v.strip() if k in hdrs else v.strip()
        if head_only:
            return status, hdrs, b""
        if "content-length" in hdrs:
            n = int(hdrs["content-length"])
            while len(self.buf) < n:
                self._fill()
        else:
            # Only a reply that ends with the connection may do this.
            assert lines[0].startswith("HTTP/1.0") or \
                hdrs.get("connection", "").lower() == "close", lines
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    break
                self.buf += chunk
            n = len(self.buf)
        body, self.buf = self.buf[:n], self.buf[n:]
        return status, hdrs, body

    def closed(self, timeout=TIMEOUT):
        """True once the server closed the connection (nothing unread)."""
        assert self.buf == b"", "unexpected bytes: %r" % self.buf
        return wait_closed(self.sock, timeout)

    def close(self):
        self.sock.close()


def error_body(status, data, hdrs):
    """Checks a JSON error reply; returns the parsed body."""
    assert hdrs.get("content-type", "").startswith("application/json"), hdrs
    body = json.loads(data)
    assert body.get("status") == status, body
    assert isinstance(body.get("error"), str) and body["error"], body
    return body


def metric_values(text):
    """Parses Prometheus text into {series (name{labels}): float}."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        series, value = line.rsplit(" ", 1)
        out[series] = float(value)
    return out


def get_metrics(g, admin=False):
    status, hdrs, data = g.request("GET", "/metrics", admin=admin)
    assert status == 200, (status, data)
    assert hdrs.get("content-type", "").startswith("text/plain"), hdrs
    return metric_values(data.decode())


def req_series(method, path, code):
    return 'graced_requests_total{method="%s",path="%s",code="%s"}' % (
        method, path, code)


# ---------------------------------------------------------------- health

def test_healthz_fields():
    g = Graced()
    c = http.client.HTTPConnection(HOST, g.port, timeout=TIMEOUT)
    raws = []
    try:
        status, hdrs, data = g.request("GET", "/healthz", conn=c)
        assert status == 200, (status, data)
        assert hdrs.get("content-type", "").startswith("application/json")
        body = json.loads(data)
        assert body["status"] == "ok" and body["state"] == "serving", body
        assert body["in_flight"] == 1, body  # this very request
        assert body["connections"] == 1, body  # this very connection
        assert "drain_ms_left" not in body, body
        # Two more connections, each known to the server (one request each).
        for _ in range(2):
            r = Raw(g)
            raws.append(r)
            r.request("GET", "/livez")
            assert r.response()[0] == 200
        body = json.loads(g.request("GET", "/healthz", conn=c)[2])
        assert body["connections"] == 3, body
        assert body["in_flight"] == 1, body  # the others are idle
        for r in raws:
            r.close()
        # No log line for a closed connection: poll, bounded.
        deadline = time.monotonic() + 5
        while True:
            body = json.loads(g.request("GET", "/healthz", conn=c)[2])
            if body["connections"] == 1:
                break
            assert time.monotonic() < deadline, body
            time.sleep(0.01)
    finally:
        c.close()
        for r in raws:
            r.close()
        g.close()


def test_livez():
    g = Graced()
    try:
        status, hdrs, data = g.request("GET", "/livez")
        assert status == 200, (status, data)
        assert hdrs.get("content-type", "").startswith("application/json")
        assert json.loads(data) == {"status": "alive"}, data
    finally:
        g.close()


def test_metrics_counts_requests():
    g = Graced()
    try:
        before = get_metrics(g)
        assert before.get('graced_state{state="serving"}') == 1.0, before
        assert before.get('graced_state{state="draining"}') == 0.0, before
        for name in ("graced_in_flight_requests", "graced_connections",
                     "graced_connections_accepted_total"):
            assert any(k.startswith(name + "{") for k in before), name
        assert any(k.startswith("graced_drain_seconds") for k in before)
        livez = req_series("GET", "/livez", "200")
        events_400 = req_series("POST", "/v1/events", "400")
        events_202 = req_series("POST", "/v1/events", "202")
        c = http.client.HTTPConnection(HOST, g.port, timeout=TIMEOUT)
        try:
            for _ in range(3):
                assert g.request("GET", "/livez", conn=c)[0] == 200
            for _ in range(2):
                assert g.request("POST", "/v1/events", body=b"{",
                                 conn=c)[0] == 400
            assert g.request("POST", "/v1/events", body=b'{"a":1}',
                             conn=c)[0] == 202
        finally:
            c.close()
        after = get_metrics(g)
        assert after.get(livez, 0) - before.get(livez, 0) == 3, \
            (before.get(livez), after.get(livez))
        assert after.get(events_400, 0) - before.get(events_400, 0) == 2, \
            after
        assert after.get(events_202, 0) - before.get(events_202, 0) == 1, \
            after
        # The first /metrics request is counted once it has been answered.
        m = req_series("GET", "/metrics", "200")
        assert after.get(m, 0) - before.get(m, 0) == 1, after.get(m)
        acc = sum(v for k, v in after.items()
                  if k.startswith("graced_connections_accepted_total{"))
        acc0 = sum(v for k, v in before.items()
                   if k.startswith("graced_connections_accepted_total{"))
        # /livez conn + /metrics conn (the second /metrics conn too).
        assert acc - acc0 == 2, (acc0, acc)
        inflight = sum(v for k, v in after.items()
                       if k.startswith("graced_in_flight_requests{"))
        assert inflight == 1, inflight  # the /metrics request itself
    finally:
        g.close()


def test_metrics_duration_histogram():
    """graced_request_duration_seconds: by route, cumulative buckets in
    seconds ending at +Inf, _sum and _count, as Prometheus expects."""
    g = Graced()
    try:
        c = http.client.HTTPConnection(HOST, g.port, timeout=TIMEOUT)
        try:
            for _ in range(5):
                assert g.request("GET", "/livez", conn=c)[0] == 200
            assert g.request("GET", "/nope", conn=c)[0] == 404
        finally:
            c.close()
        status, _, body = g.request("GET", "/metrics", admin=True)
        assert status == 200
        text = body.decode()
        assert "# TYPE graced_request_duration_seconds histogram\n" in text
        name = "graced_request_duration_seconds"
        live = 'method="GET",path="/livez"'
        buckets = re.findall(r'^%s_bucket\{%s,le="([^"]+)"\} (\d+)$' %
                             (name, re.escape(live)), text, re.M)
        les = [le for le, _ in buckets]
        counts = [int(n) for _, n in buckets]
        assert les[-1] == "+Inf" and les[0] == "0.001", les
        assert [float(x) for x in les[:-1]] == \
            sorted(float(x) for x in les[:-1]), les
        assert counts == sorted(counts), counts  # cumulative
        assert counts[-1] == 5, counts
        count = re.search(r'^%s_count\{%s\} (\d+)$' % (name, re.escape(live)),
                          text, re.M)
        total = re.search(r'^%s_sum\{%s\} ([0-9.]+)$' % (name, re.escape(live)),
                          text, re.M)
        assert count and int(count.group(1)) == 5, text
        # Five replies on loopback take more than nothing, less than 5 s.
        assert total and 0 < float(total.group(1)) < 5, text
        assert re.search(r'^%s_count\{method="",path="unmatched"\} 1$' %
                         name, text, re.M), text
    finally:
        g.close()


def test_head():
    g = Graced()
    try:
        for path in ("/healthz", "/livez", "/metrics"):
            r = Raw(g)
            try:
                r.request("HEAD", path)
                status, hdrs, _ = r.response(head_only=True)
                assert status == 200, (path, status)
                # A reply to HEAD has no body: the next response on this
                # connection must start right after the headers.
                r.request("GET", "/livez")
                status, _, body = r.response()
                assert status == 200 and json.loads(body) == \
                    {"status": "alive"}, (path, status, body)
                assert r.buf == b"", (path, r.buf)
            finally:
                r.close()
        # http.client as well.
        status, hdrs, data = g.request("HEAD", "/healthz")
        assert status == 200 and data == b"", (status, data)
        # HEAD where GET is not allowed is a 405 like any other method.
        status, hdrs, _ = g.request("HEAD", "/v1/events")
        assert status == 405 and hdrs.get("allow") == "POST", (status, hdrs)
    finally:
        g.close()


# ---------------------------------------------------------------- errors

def test_not_found_json():
    g = Graced()
    try:
        for method, path in (("GET", "/nope"), ("POST", "/v1/event"),
                             ("GET", "/healthz/extra"), ("GET", "/"),
                             ("DELETE", "/v1/eventsX"),
                             ("GET", "/admin/drain")):
            status, hdrs, data = g.request(method, path)
            assert status == 404, (method, path, status)
            body = error_body(404, data, hdrs)
            assert "allow" not in hdrs, hdrs
            assert body["error"] == "not found", body
    finally:
        g.close()


def test_method_not_allowed_json():
    g = Graced()
    try:
        cases = (("DELETE", "/healthz", "GET, HEAD"),
                 ("POST", "/healthz", "GET, HEAD"),
                 ("PUT", "/livez", "GET, HEAD"),
                 ("POST", "/metrics", "GET, HEAD"),
                 ("GET", "/v1/events", "POST"),
                 ("PUT", "/v1/events", "POST"),
                 ("DELETE", "/v1/events", "POST"))
        for method, path, allow in cases:
            status, hdrs, data = g.request(
                method, path, body=b"{}" if method in ("POST", "PUT")
                else None)
            assert status == 405, (method, path, status)
            error_body(405, data, hdrs)
            assert hdrs.get("allow") == allow, (method, path, hdrs)
    finally:
        g.close()


def post_expect_400(g, body):
    status, hdrs, data = g.request("POST", "/v1/events", body=body,
                                   headers={"Content-Type":
                                            "application/json"})
    assert status == 400, (body, status, data)
    return error_body(400, data, hdrs)


def test_bad_json_400():
    g = Graced()
    try:
        for body in (b"{", b"not json", b'{"a":}', b"", b'{"a":1}x',
                     b'{"a":1,"a":2}', b"\xff\xfe"):
            post_expect_400(g, body)
        assert g.spool_lines() == [], g.spool_lines()
    finally:
        g.close()


def test_empty_array_400():
    g = Graced()
    try:
        post_expect_400(g, b"[]")
        post_expect_400(g, b"  [ ]  ")
        assert g.spool_lines() == [], g.spool_lines()
    finally:
        g.close()


def test_non_object_event_400():
    g = Graced()
    try:
        for body in (b"[1]", b'"x"', b"[{}, 2]", b"42", b"null", b"true",
                     b"[[{}]]", b'[{"a":1}, "b"]', b"[{}, null]"):
            post_expect_400(g, body)
        # Nothing of a rejected array is written, not even its objects.
        assert g.spool_lines() == [], g.spool_lines()
        # The same instance still accepts a good one.
        status, body = g.json("POST", "/v1/events", body=b'[{"ok":1}]')
        assert (status, body) == (202, {"accepted": 1}), (status, body)
        assert g.spool_lines() == ['{"ok":1}'], g.spool_lines()
    finally:
        g.close()


def test_oversize_body_413_and_close():
    g = Graced("--max-body", "1K")
    try:
        # Exactly --max-body bytes is accepted.
        ev = {"pad": ""}
        ev["pad"] = "x" * (1024 - len(json.dumps(ev, separators=(",", ":"))))
        body = json.dumps(ev, separators=(",", ":")).encode()
        assert len(body) == 1024
        status, data = g.json("POST", "/v1/events", body=body)
        assert (status, data) == (202, {"accepted": 1}), (status, data)
        # One byte more: only the headers are sent, the 413 comes before
        # the body. libevent 2.1 answers this itself (no hook for the
        # reply), so its body is libevent's HTML, not our JSON: only the
        # status and the close are checked.
        r = Raw(g)
        try:
            r.send(b"POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                   b"Content-Type: application/json\r\n"
                   b"Content-Length: 1025\r\n\r\n")
            status, hdrs, _ = r.response()
            assert status == 413, (status, hdrs)
            assert r.closed(), "connection left open after 413"
        finally:
            r.close()
        # A much larger declared length, with body bytes right behind it.
        r = Raw(g)
        try:
            r.send(b"POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                   b"Content-Length: 10000000\r\n\r\n" + b"[" * 100)
            status, _, _ = r.response()
            assert status == 413, status
            assert r.closed(), "connection left open after 413"
        finally:
            r.close()
        assert len(g.spool_lines()) == 1, g.spool_lines()
        # libevent's own replies count too, on the "unmatched" row.
        m = get_metrics(g)
        assert m.get(req_series("", "unmatched", "413")) == 2, {
            k: v for k, v in m.items() if "requests_total" in k}
    finally:
        g.close()
    # The same without the access log.
    g = Graced("--max-body", "1K", "--access-log", "off")
    try:
        r = Raw(g)
        try:
            r.send(b"POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                   b"Content-Length: 1025\r\n\r\n")
            assert r.response()[0] == 413
        finally:
            r.close()
        assert get_metrics(g).get(req_series("", "unmatched", "413")) == 1
    finally:
        g.close()


def test_duplicate_content_length_400():
    g = Graced()
    try:
        smuggled = (b"POST /v1/events HTTP/1.1\r\nHost: x\r\n"
                    b"Content-Length: 7\r\n\r\n{\"b\":2}")
        for first, body in ((b"2", b"{}"), (b"2", b"{}" + smuggled)):
            r = Raw(g)
            try:
                # Had the server used the first length and read the rest as
                # a second request, the event {"b":2} would be smuggled in.
                r.send(b"POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                       b"Content-Length: " + first + b"\r\n"
                       b"Content-Length: %d\r\n\r\n" % len(body) + body)
                status, hdrs, data = r.response()
                assert status == 400, (first, status, data)
                error_body(400, data, hdrs)
                assert hdrs.get("connection", "").lower() == "close", hdrs
                assert r.closed(), "connection left open"
            finally:
                r.close()
        assert g.spool_lines() == [], g.spool_lines()
    finally:
        g.close()


def test_content_length_with_transfer_encoding_400():
    g = Graced()
    try:
        for te in (b"chunked", b"identity"):
            r = Raw(g)
            try:
                r.send(b"POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                       b"Content-Length: 7\r\n"
                       b"Transfer-Encoding: " + te + b"\r\n\r\n"
                       b"7\r\n{\"a\":1}\r\n0\r\n\r\n")
                status, hdrs, data = r.response()
                assert status == 400, (te, status, data)
                # Debian's libevent 2.1.12 rejects Content-Length beside
                # Transfer-Encoding itself, before any handler runs, with
                # its own HTML page (2.1 has no hook for that reply), so
                # the JSON body is not required here: status and close are.
                if hdrs.get("content-type", "").startswith(
                        "application/json"):
                    error_body(400, data, hdrs)
                assert hdrs.get("connection", "").lower() == "close", hdrs
                assert r.closed(), "connection left open"
            finally:
                r.close()
        assert g.spool_lines() == [], g.spool_lines()
        # Chunked alone is a well-framed request and is accepted.
        r = Raw(g)
        try:
            r.send(b"POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                   b"Transfer-Encoding: chunked\r\n\r\n"
                   b"7\r\n{\"a\":1}\r\n0\r\n\r\n")
            status, hdrs, data = r.response()
            assert status == 202, (status, data)
        finally:
            r.close()
        assert g.spool_lines() == ['{"a":1}'], g.spool_lines()
    finally:
        g.close()


def test_max_connections_503():
    g = Graced("--max-connections", "2")
    conns = []
    try:
        for _ in range(2):
            c = http.client.HTTPConnection(HOST, g.port, timeout=TIMEOUT)
            conns.append(c)
            assert g.request("GET", "/livez", conn=c)[0] == 200
        # Both are now idle and open; a third connection is one too many.
        r = Raw(g)
        try:
            r.request("GET", "/healthz")
            status, hdrs, data = r.response()
            assert status == 503, (status, data)
            body = error_body(503, data, hdrs)
            assert body["error"] == "too many connections", body
            assert hdrs.get("connection", "").lower() == "close", hdrs
            assert r.closed(), "overloaded connection left open"
        finally:
            r.close()
        # The first two still work, on the same connections.
        for c in conns:
            sock = c.sock
            status, hdrs, data = g.request("GET", "/healthz", conn=c)
            assert status == 200, (status, data)
            assert c.sock is sock, "client had to reconnect"
        # Once one of them goes, a new connection is served again. The
        # close has no log line: poll, bounded.
        conns.pop().close()
        deadline = time.monotonic() + 5
        while True:
            status, _, data = g.request("GET", "/livez")
            if status == 200:
                break
            assert status == 503, (status, data)
            assert time.monotonic() < deadline, "still 503 after a close"
            time.sleep(0.02)
    finally:
        for c in conns:
            c.close()
        g.close()


# ---------------------------------------------------------------- connections

def test_http10_without_keepalive_closes():
    g = Graced()
    try:
        r = Raw(g)
        try:
            r.request("GET", "/livez", version="1.0")
            status, hdrs, body = r.response()
            assert status == 200, status
            assert json.loads(body) == {"status": "alive"}, body
            assert r.closed(), "HTTP/1.0 connection left open"
        finally:
            r.close()
        # HTTP/1.0 asking for keep-alive may keep the connection.
        r = Raw(g)
        try:
            r.request("GET", "/livez", version="1.0",
                      headers=["Connection: keep-alive"])
            status, hdrs, _ = r.response()
            assert status == 200, status
            assert "close" not in hdrs.get("connection", "").lower(), hdrs
            r.request("GET", "/healthz", version="1.0",
                      headers=["Connection: keep-alive"])
            assert r.response()[0] == 200
        finally:
            r.close()
    finally:
        g.close()


def test_keepalive_reuse():
    g = Graced()
    try:
        r = Raw(g)
        try:
            for i in range(5):
                r.request("GET", "/livez")
                status, hdrs, _ = r.response()
                assert status == 200, (i, status)
                assert "close" not in hdrs.get("connection", "").lower(), \
                    hdrs
                r.request("POST", "/v1/events", body=b'{"i":%d}' % i)
                status, _, body = r.response()
                assert (status, json.loads(body)) == \
                    (202, {"accepted": 1}), (status, body)
            # The server counts one connection: this one.
            r.request("GET", "/healthz")
            status, _, body = r.response()
            assert json.loads(body)["connections"] == 1, body
            # An error reply does not cost the connection either.
            r.request("GET", "/nope")
            assert r.response()[0] == 404
            r.request("GET", "/livez")
            assert r.response()[0] == 200
        finally:
            r.close()
        assert g.spool_lines() == ['{"i":%d}' % i for i in range(5)]
    finally:
        g.close()


def test_pipelined_in_order():
    g = Graced()
    try:
        r = Raw(g)
        try:
            reqs = b""
            for i in range(3):
                b = b'{"seq":%d}' % i
                reqs += (b"POST /v1/events HTTP/1.1\r\nHost: x\r\n"
                         b"Content-Length: %d\r\n\r\n" % len(b)) + b
            reqs += b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n"
            reqs += b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n"
            reqs += b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
            reqs += b"GET /v1/events HTTP/1.1\r\nHost: x\r\n\r\n"
            r.send(reqs)
            got = []
            for _ in range(3):
                status, _, body = r.response()
                got.append((status, json.loads(body)))
            assert got == [(202, {"accepted": 1})] * 3, got
            status, _, body = r.response()
            assert status == 404 and json.loads(body)["status"] == 404
            status, _, body = r.response()
            assert status == 200 and json.loads(body) == {"status": "alive"}
            status, _, body = r.response()
            assert status == 200 and json.loads(body)["state"] == \
                "serving", (status, body)
            status, hdrs, body = r.response()
            assert status == 405 and hdrs.get("allow") == "POST", hdrs
            assert r.buf == b"", r.buf
        finally:
            r.close()
        assert g.spool_lines() == ['{"seq":%d}' % i for i in range(3)], \
            g.spool_lines()
    finally:
        g.close()


# ---------------------------------------------------------------- admin

def test_admin_endpoints():
    g = Graced("--drain-delay", "0.3", "--shutdown-timeout", "10")
    try:
        status, body = g.json("GET", "/healthz", admin=True)
        assert status == 200 and body["status"] == "ok", (status, body)
        assert body["state"] == "serving", body
        status, body = g.json("GET", "/livez", admin=True)
        assert (status, body) == (200, {"status": "alive"}), body
        m = get_metrics(g, admin=True)
        assert m.get('graced_state{state="serving"}') == 1.0, m
        # Public routes are not on the admin listener, and vice versa.
        for method, path in (("GET", "/nope"), ("POST", "/v1/events"),
                             ("GET", "/admin"), ("POST", "/admin/drainx")):
            status, hdrs, data = g.request(method, path, admin=True,
                                           body=b"{}" if method == "POST"
                                           else None)
            assert status == 404, (method, path, status)
            error_body(404, data, hdrs)
        for method in ("GET", "PUT", "DELETE"):
            status, hdrs, data = g.request(method, "/admin/drain",
                                           admin=True)
            assert status == 405, (method, status)
            error_body(405, data, hdrs)
            assert hdrs.get("allow") == "POST", hdrs
        assert g.events("drain_begin") == [], "405 must not drain"
        status, hdrs, _ = g.request("HEAD", "/healthz", admin=True)
        assert status == 200, status
        # POST /admin/drain: 202 and the instance drains.
        status, body = g.json("POST", "/admin/drain", admin=True)
        assert (status, body) == (202, {"state": "draining"}), (status, body)
        ev = g.wait_event("drain_begin")
        assert ev.get("cause") == "admin", ev
        status, body = g.json("GET", "/healthz")
        assert status == 503 and body["status"] == "draining", body
        status, body = g.json("GET", "/healthz", admin=True)
        assert status == 503 and body["state"] == "draining", body
        status, body = g.json("GET", "/livez")
        assert status == 200, status
        # A second drain request is harmless.
        status, body = g.json("POST", "/admin/drain", admin=True)
        assert status in (200, 202), (status, body)
        assert g.wait_exit() == 0, g.log_text()
        assert len(g.events("drain_begin")) == 1, g.log_text()
    finally:
        g.close()


def check_drain_wait(g, delay):
    t0 = time.monotonic()
    status, hdrs, data = g.request("POST", "/admin/drain?wait=1", admin=True)
    returned = time.monotonic()
    assert 200 <= status < 300, (status, data)
    assert json.loads(data)["state"] in ("stopping", "stopped"), data
    closed = g.wait_event("listener_closed")
    begin = g.wait_event("drain_begin")
    assert returned - t0 >= delay * 0.9, returned - t0
    # The reply was sent after the listener closed: the reader thread may
    # see the log line a little after our return, never long after.
    assert closed["_at"] <= returned + 0.5, (closed["_at"], returned)
    assert begin["_at"] <= closed["_at"]


def test_admin_drain_wait():
    """The waiting reply arrives once the listener has closed, also when
    nothing else keeps the process alive after that."""
    delay = 0.8
    g = Graced("--drain-delay", str(delay), "--shutdown-timeout", "10")
    try:
        check_drain_wait(g, delay)
        assert g.wait_exit() == 0, g.log_text()
    finally:
        g.close()


def test_admin_drain_wait_with_fresh_connection():
    """The same with a connection that has sent nothing yet: its first-byte
    grace keeps the process up after the listener closes."""
    delay = 0.8
    g = Graced("--drain-delay", str(delay), "--shutdown-timeout", "10",
               "--first-byte-grace", "1")
    fresh = g.connect()
    try:
        check_drain_wait(g, delay)
        assert g.wait_exit() == 0, g.log_text()
    finally:
        fresh.close()
        g.close()


# ---------------------------------------------------------------- access log

def test_access_log_per_request():
    g = Graced()
    try:
        cases = [("GET", "/livez", None, 200),
                 ("GET", "/nope-al", None, 404),
                 ("DELETE", "/healthz", None, 405),
                 ("POST", "/v1/events", b"{bad", 400),
                 ("POST", "/v1/events", b'{"a":1}', 202),
                 ("HEAD", "/healthz", None, 200),
                 ("GET", "/healthz?x=1", None, 200)]
        for method, path, body, want in cases:
            status = g.request(method, path, body=body)[0]
            assert status == want, (method, path, status)
        # Lines are written once each reply has gone out, in order here
        # (one request at a time): wait for the last, then compare all.
        last = cases[-1]
        g.wait_event("request", pred=lambda l: l.get("path") == last[1])
        reqs = g.events("request")
        got = [(l.get("method"), l.get("path"), l.get("status"))
               for l in reqs]
        assert got == [(m, p, s) for m, p, _, s in cases], got
        for l in reqs:
            assert isinstance(l.get("ms"), (int, float)) and \
                0 <= l["ms"] < 5000, l
    finally:
        g.close()


if __name__ == "__main__":
    run([test_healthz_fields, test_livez, test_metrics_counts_requests,
         test_metrics_duration_histogram,
         test_head, test_not_found_json, test_method_not_allowed_json,
         test_bad_json_400, test_empty_array_400, test_non_object_event_400,
         test_oversize_body_413_and_close,
         test_duplicate_content_length_400,
         test_content_length_with_transfer_encoding_400,
         test_max_connections_503, test_http10_without_keepalive_closes,
         test_keepalive_reuse, test_pipelined_in_order,
         test_admin_endpoints, test_admin_drain_wait,
         test_admin_drain_wait_with_fresh_connection,
         test_access_log_per_request])
