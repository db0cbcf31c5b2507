"""The events application (DESIGN.md, "Interfaces"): POST /v1/events
appends each event once, as one compact JSON line, to the spool; every
accepted event is on disk when the process exits from a drain; SIGHUP
reopens the spool after an external rename.
"""
import http.client
import json
import os
import signal
import threading

from harness import TIMEOUT, Graced, run

HOST = "127.0.0.1"
FAST = ("--drain-delay", "0.2", "--shutdown-timeout", "10")


def compact(ev):
    """The line jansson writes for ev: compact, keys in the order sent,
    non-ASCII as UTF-8."""
    return json.dumps(ev, separators=(",", ":"), ensure_ascii=False)


def is_compact(line):
    """True if line has no whitespace outside its JSON strings."""
    in_str = esc = False
    for ch in line:
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        elif ch in " \t\r\n":
            return False
    return not in_str


def post(g, payload, conn=None):
    body = payload if isinstance(payload, bytes) else \
        json.dumps(payload).encode()
    status, hdrs, data = g.request("POST", "/v1/events", body=body,
                                   headers={"Content-Type":
                                            "application/json"},
                                   conn=conn)
    return status, json.loads(data)


def spool_raw(path):
    with open(path, "rb") as f:
        return f.read()


def test_object_and_array_in_order():
    g = Graced(*FAST)
    try:
        sent = []
        ev = {"id": 1, "kind": "single"}
        assert post(g, ev) == (202, {"accepted": 1})
        sent.append(ev)
        batch = [{"id": 2, "kind": "batch"}, {"id": 3, "kind": "batch"},
                 {"id": 4, "nested": {"b": [1, 2, {"c": None}], "a": 1.5}}]
        assert post(g, batch) == (202, {"accepted": 3})
        sent += batch
        ev = {"z": 1, "a": 2, "m": 3}  # key order as sent, not sorted
        assert post(g, ev) == (202, {"accepted": 1})
        sent.append(ev)
        one = [{"id": 6}]  # an array of one
        assert post(g, one) == (202, {"accepted": 1})
        sent += one
        # Whitespace in the request is not in the spool.
        spaced = b'  {\n  "id" : 7 ,\t"tags" : [ "a" , "b" ]\n}\n'
        assert post(g, spaced) == (202, {"accepted": 1})
        sent.append({"id": 7, "tags": ["a", "b"]})
        # 202 means written already (before the reply), not at exit.
        raw = spool_raw(g.spool)
        assert raw.endswith(b"\n"), raw
        lines = raw.decode().split("\n")[:-1]
        assert lines == [compact(e) for e in sent], lines
        for line, ev in zip(lines, sent):
            assert json.loads(line) == ev, (line, ev)
        g.signal(signal.SIGTERM)
        assert g.wait_exit() == 0, g.log_text()
        assert g.spool_lines() == [compact(e) for e in sent]
    finally:
        g.close()


def test_lines_are_valid_json_equal_to_events():
    g = Graced(*FAST)
    try:
        sent = [{"s": 'quote " backslash \\ slash / tab \t nl \n cr \r'},
                {"n": 0, "neg": -12, "big": 9007199254740993,
                 "f": 0.25, "e": 1e-7},
                {"t": True, "f": False, "null": None, "empty": {},
                 "arr": []},
                {"ctl": "\u0001\u001f", "html": "<script>&"},
                {"deep": [[[{"x": [{"y": {}}]}]]]},
                {"": "empty key"}]
        for ev in sent:
            assert post(g, ev) == (202, {"accepted": 1}), ev
        lines = g.spool_lines()
        assert len(lines) == len(sent), lines
        for line, ev in zip(lines, sent):
            assert "\n" not in line and "\r" not in line, line
            assert json.loads(line) == ev, (line, ev)
            assert is_compact(line), line
    finally:
        g.close()


def test_unicode_preserved():
    g = Graced(*FAST)
    try:
        ev = {"msg": "h\u00e9llo \u2713 \u65e5\u672c\u8a9e \U0001F600",
              "\u00fcber": "\u0444\u044b\u0432"}
        # Sent as raw UTF-8, and once more as \u escapes.
        assert post(g, compact(ev).encode("utf-8")) == \
            (202, {"accepted": 1})
        assert post(g, json.dumps(ev, ensure_ascii=True).encode()) == \
            (202, {"accepted": 1})
        lines = g.spool_lines()
        assert len(lines) == 2, lines
        for line in lines:
            assert json.loads(line) == ev, (line, ev)
        raw = spool_raw(g.spool)
        assert "\U0001F600".encode("utf-8") in raw, raw
        # Invalid UTF-8 is not JSON: rejected, nothing written.
        status, body = post(g, b'{"bad":"\xc3\x28"}')
        assert status == 400 and body["status"] == 400, body
        assert len(g.spool_lines()) == 2
    finally:
        g.close()


def test_concurrent_posts_then_drain():
    threads_n, per_thread, batch = 8, 40, 3
    g = Graced(*FAST)
    errors = []
    accepted = []
    lock = threading.Lock()

    def worker(t):
        c = http.client.HTTPConnection(HOST, g.port, timeout=TIMEOUT)
        try:
            for i in range(per_thread):
                if i % 4 == 3:  # some arrays among the objects
                    evs = [{"id": "%d-%d-%d" % (t, i, k), "t": t}
                           for k in range(batch)]
                else:
                    evs = {"id": "%d-%d" % (t, i), "t": t}
                n = len(evs) if isinstance(evs, list) else 1
                status, body = post(g, evs, conn=c)
                if status != 202 or body != {"accepted": n}:
                    raise AssertionError((status, body))
                if i == 0:
                    sock = c.sock
                elif c.sock is not sock:
                    raise AssertionError("keep-alive connection lost")
                with lock:
                    accepted.extend(e["id"] for e in
                                    (evs if isinstance(evs, list)
                                     else [evs]))
        except Exception as e:  # noqa: BLE001 - reported below
            with lock:
                errors.append("thread %d: %r" % (t, e))
        finally:
            c.close()

    try:
        ts = [threading.Thread(target=worker, args=(t,))
              for t in range(threads_n)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(TIMEOUT)
        assert not any(t.is_alive() for t in ts), "client threads hung"
        assert errors == [], errors
        want = threads_n * (per_thread // 4 * (3 + batch) +
                            per_thread % 4)
        assert len(accepted) == want, (len(accepted), want)
        g.signal(signal.SIGTERM)
        assert g.wait_exit() == 0, g.log_text()
        lines = g.spool_lines()
        ids = [json.loads(l)["id"] for l in lines]
        assert len(ids) == len(set(ids)), "an event was written twice"
        assert sorted(ids) == sorted(accepted), \
            (len(ids), len(accepted))
        # Per connection, requests are sequential: each thread's events
        # appear in the order it sent them.
        for t in range(threads_n):
            mine = [i for i in ids if i.startswith("%d-" % t)]
            mine_sent = [i for i in accepted if i.startswith("%d-" % t)]
            assert mine == mine_sent, t
        closed = g.events("spool_closed")
        assert len(closed) == 1, g.log_text()
        assert closed[0]["events"] == want, closed
    finally:
        g.close()


def test_spool_closed_count():
    g = Graced(*FAST)
    try:
        assert post(g, {"a": 1}) == (202, {"accepted": 1})
        assert post(g, [{"b": 1}, {"b": 2}]) == (202, {"accepted": 2})
        # Rejected requests are not counted.
        assert post(g, b"[]")[0] == 400
        assert post(g, b"[{}, 1]")[0] == 400
        g.signal(signal.SIGTERM)
        ev = g.wait_event("spool_closed")
        assert ev["events"] == 3, ev
        assert ev.get("path") == g.spool, ev
        stopped = g.wait_event("stopped")
        assert stopped["exit"] == 0, stopped
        # The spool is closed after the last request, before "stopped".
        lines = [l.get("event") for l in g.lines]
        assert lines.index("spool_closed") < lines.index("stopped"), lines
        assert g.wait_exit() == 0, g.log_text()
        assert len(g.spool_lines()) == 3
    finally:
        g.close()


def test_spool_closed_count_with_no_events():
    g = Graced(*FAST)
    try:
        g.signal(signal.SIGINT)
        ev = g.wait_event("spool_closed")
        assert ev["events"] == 0, ev
        assert g.wait_exit() == 0, g.log_text()
        assert g.spool_lines() == []
    finally:
        g.close()


def test_existing_spool_is_appended_to():
    g = None
    try:
        g = Graced(*FAST)
        with open(g.spool, "ab") as f:
            f.write(b'{"old":1}\n')
        assert post(g, {"new": 1}) == (202, {"accepted": 1})
        assert g.spool_lines() == ['{"old":1}', '{"new":1}']
    finally:
        if g:
            g.close()


def test_sighup_reopens_spool():
    g = Graced(*FAST)
    try:
        old = [{"id": "old-1"}, {"id": "old-2"}]
        assert post(g, old[0]) == (202, {"accepted": 1})
        assert post(g, [old[1]]) == (202, {"accepted": 1})
        rotated = g.spool + ".1"
        os.rename(g.spool, rotated)
        # Before the HUP the daemon still writes to the renamed file.
        mid = {"id": "before-hup"}
        assert post(g, mid) == (202, {"accepted": 1})
        assert not os.path.exists(g.spool)
        g.signal(signal.SIGHUP)
        ev = g.wait_event("spool_reopened")
        assert ev.get("path") == g.spool, ev
        assert os.path.exists(g.spool), "spool not recreated at its path"
        new = [{"id": "new-1"}, {"id": "new-2"}]
        assert post(g, new[0]) == (202, {"accepted": 1})
        assert post(g, [new[1]]) == (202, {"accepted": 1})
        with open(rotated) as f:
            assert f.read().splitlines() == \
                [compact(e) for e in old + [mid]]
        assert g.spool_lines() == [compact(e) for e in new]
        # Still serving normally, and the count covers both files.
        status, body = g.json("GET", "/healthz")
        assert status == 200 and body["state"] == "serving", body
        g.signal(signal.SIGTERM)
        closed = g.wait_event("spool_closed")
        assert closed["events"] == 5, closed
        assert g.wait_exit() == 0, g.log_text()
        assert g.spool_lines() == [compact(e) for e in new]
    finally:
        g.close()


if __name__ == "__main__":
    run([test_object_and_array_in_order,
         test_lines_are_valid_json_equal_to_events,
         test_unicode_preserved, test_concurrent_posts_then_drain,
         test_spool_closed_count, test_spool_closed_count_with_no_events,
         test_existing_spool_is_appended_to, test_sighup_reopens_spool])
