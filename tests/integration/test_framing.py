"""Strict HTTP/1.1 framing (DESIGN.md, "Hostile clients and faults"; RFC
9112): every request that a front proxy may frame differently gets a JSON
400 with Connection: close, the connection is closed, and whatever was
smuggled behind it never runs; well-framed requests, pipelined or not,
still work. Raw sockets only: http.client would fix the requests up.
"""
import json
import re
import socket
import time

from harness import Graced, run, wait_closed

# A request that, if it ran, would put an event in the spool.
SMUGGLED = (b"POST /v1/events HTTP/1.1\r\nHost: x\r\n"
            b"Content-Length: 15\r\n\r\n{\"smuggled\":1}\n")
EVENT = b'{"a":1}'  # 7 bytes

# (name, metrics reason, bytes): each is sent on its own connection and
# followed by SMUGGLED.
BAD = [
    ("content_length_sign", "content_length",
     b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: +7\r\n\r\n"
     + EVENT),
    ("chunk_size_0x", "chunk",
     b"POST /v1/events HTTP/1.1\r\nHost: x\r\n"
     b"Transfer-Encoding: chunked\r\n\r\n0x7\r\n" + EVENT +
     b"\r\n0\r\n\r\n"),
    ("chunk_size_blank", "chunk",
     b"POST /v1/events HTTP/1.1\r\nHost: x\r\n"
     b"Transfer-Encoding: chunked\r\n\r\n 7\r\n" + EVENT +
     b"\r\n0\r\n\r\n"),
    ("chunk_size_sign", "chunk",
     b"POST /v1/events HTTP/1.1\r\nHost: x\r\n"
     b"Transfer-Encoding: chunked\r\n\r\n+7\r\n" + EVENT +
     b"\r\n0\r\n\r\n"),
    ("two_hosts", "host",
     b"GET /livez HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
    ("no_host", "host", b"GET /livez HTTP/1.1\r\n\r\n"),
    # Without its Content-Length evhttp would read no body and run the
    # body as the next request.
    ("space_before_colon", "space_before_colon",
     b"POST /v1/events HTTP/1.1\r\nHost: x\r\n"
     b"Content-Length : %d\r\n\r\n" % len(SMUGGLED)),
    ("nul_in_value", "control_char",
     b"GET /livez HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n"),
    ("ctl_in_value", "control_char",
     b"GET /livez HTTP/1.1\r\nHost: x\r\nX-A: a\x01b\r\n\r\n"),
    ("del_in_value", "control_char",
     b"GET /livez HTTP/1.1\r\nHost: x\r\nX-A: a\x7fb\r\n\r\n"),
    ("obs_fold", "obs_fold",
     b"GET /livez HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n"),
    ("obs_fold_tab", "obs_fold",
     b"GET /livez HTTP/1.1\r\nHost: x\r\nX-A: a\r\n\tb\r\n\r\n"),
    # evhttp reads no body for HEAD: the body would be the next request.
    ("head_with_body", "unexpected_body",
     b"HEAD /livez HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
     % len(SMUGGLED)),
]


def read_until_closed(sock, timeout=5.0):
    """Everything the server sends until it closes (or timeout)."""
    sock.settimeout(timeout)
    data = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        except socket.timeout:
            raise AssertionError("connection left open; got %r" % data)
        if not chunk:
            break
        data += chunk
    return data


def parse_responses(data, heads=()):
    """Splits raw bytes into (status, headers, body) responses, bodies by
    Content-Length; the replies whose index is in heads answer HEAD and
    have none."""
    out = []
    while data:
        head, sep, rest = data.partition(b"\r\n\r\n")
        assert sep, "not a whole response: %r" % data
        lines = head.decode("latin-1").split("\r\n")
        m = re.match(r"HTTP/1\.[01] (\d{3}) ", lines[0] + " ")
        assert m, "not a status line: %r" % lines[0]
        hdrs = {}
        for line in lines[1:]:
            k, v = line.split(":", 1)
            hdrs[k.strip().lower()] = v.strip()
        n = int(hdrs.get("content-length", "0"))
        if len(out) in heads:
            n = 0
        out.append((int(m.group(1)), hdrs, rest[:n]))
        data = rest[n:]
    return out


def metric(g, reason):
    status, _, body = g.request("GET", "/metrics")
    assert status == 200
    m = re.search(r'^graced_requests_rejected_total\{reason="%s"\} (\d+)$'
                  % reason, body.decode(), re.M)
    assert m, "no rejected counter for %s" % reason
    return int(m.group(1))


def test_smuggling_shapes_get_400_and_close():
    g = Graced()
    try:
        for name, reason, req in BAD:
            s = g.connect()
            try:
                s.sendall(req + SMUGGLED)
                data = read_until_closed(s)
            finally:
                s.close()
            got = parse_responses(
                data, heads=(0,) if req.startswith(b"HEAD") else ())
            # One reply: had the smuggled request run, a second would follow.
            assert len(got) == 1, (name, data)
            status, hdrs, body = got[0]
            assert status == 400, (name, data)
            assert hdrs.get("connection", "").lower() == "close", (name, hdrs)
            if not req.startswith(b"HEAD"):
                assert hdrs.get("content-type") == "application/json", hdrs
                doc = json.loads(body)
                assert doc["status"] == 400 and doc["error"], (name, doc)
            g.wait_event("request_rejected",
                         pred=lambda l, r=reason: l.get("reason") == r)
        # Nothing was smuggled in, and nothing from the refused requests.
        assert g.spool_lines() == [], g.spool_lines()
        for reason in set(r for _, r, _ in BAD):
            assert metric(g, reason) == sum(
                1 for _, r, _ in BAD if r == reason), reason
        status, _, _ = g.request("GET", "/livez")
        assert status == 200
    finally:
        g.close()


def test_good_request_before_a_bad_one_is_served():
    g = Graced()
    try:
        s = g.connect()
        try:
            s.sendall(b"POST /v1/events HTTP/1.1\r\nHost: x\r\n"
                      b"Content-Length: 7\r\n\r\n" + EVENT +
                      b"GET /livez HTTP/1.1\r\nHost : x\r\n\r\n" + SMUGGLED)
            got = parse_responses(read_until_closed(s))
        finally:
            s.close()
        assert [r[0] for r in got] == [202, 400], got
        assert g.spool_lines() == ['{"a":1}'], g.spool_lines()
    finally:
        g.close()


def test_well_framed_requests_still_work():
    g = Graced()
    try:
        s = g.connect()
        try:
            # Pipelined: chunked with extensions and a trailer, a
            # Content-Length body with blanks around the number, HEAD, and
            # a last request that asks to close.
            s.sendall(b"POST /v1/events HTTP/1.1\r\nHost: x\r\n"
                      b"Transfer-Encoding: chunked\r\n\r\n"
                      b"3;name=value\r\n{\"a\r\n4 ; x=\"q\"\r\n\":1}\r\n"
                      b"0;last\r\nX-Trailer: t\r\n\r\n"
                      b"POST /v1/events HTTP/1.1\r\nhost: x\r\n"
                      b"content-length:  7 \r\n\r\n{\"b\":2}"
                      b"HEAD /livez HTTP/1.1\r\nHost: x\r\n\r\n"
                      b"GET /livez HTTP/1.1\r\nHost: x\r\n"
                      b"Connection: close\r\n\r\n")
            data = read_until_closed(s)
        finally:
            s.close()
        got = parse_responses(data, heads=(2,))
        assert [r[0] for r in got] == [202, 202, 200, 200], data
        assert g.spool_lines() == ['{"a":1}', '{"b":2}'], g.spool_lines()
        # HTTP/1.0 needs no Host.
        s = g.connect()
        try:
            s.sendall(b"GET /livez HTTP/1.0\r\n\r\n")
            data = read_until_closed(s)
        finally:
            s.close()
        assert data.startswith(b"HTTP/1.0 200"), data
        assert g.events("request_rejected") == [], g.events(
            "request_rejected")
    finally:
        g.close()


if __name__ == "__main__":
    run([
        test_smuggling_shapes_get_400_and_close,
        test_good_request_before_a_bad_one_is_served,
        test_well_framed_requests_still_work,
    ])
