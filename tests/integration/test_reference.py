"""docs/reference.md lists every metric and every log event: each metric a
running graced serves on /metrics, and each event name the sources log,
must be on that page (and each event the page lists must still exist)."""
import glob
import os
import re

from harness import Graced, run

TOP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
# Calls that write a log line, with the event as their first string.
LOG_CALL = re.compile(
    r'\b(?:log_event|graced_log|log_transition|log_line_begin)\s*\('
    r'[^;"]*?"([a-z_]+)"', re.S)


def reference():
    with open(os.path.join(TOP, "docs", "reference.md")) as f:
        return f.read()


def logged_events():
    events = set()
    for path in glob.glob(os.path.join(TOP, "src", "**", "*.c"),
                          recursive=True):
        with open(path) as f:
            events.update(LOG_CALL.findall(f.read()))
    return events


def test_every_metric_is_documented():
    doc = reference()
    g = Graced()
    try:
        g.request("GET", "/livez")
        status, _, body = g.request("GET", "/metrics")
        assert status == 200
    finally:
        g.close()
    names = set(re.findall(r"^# TYPE (\w+) ", body.decode(), re.M))
    assert len(names) >= 10, names
    missing = sorted(n for n in names if "`%s`" % n not in doc)
    assert not missing, "metrics not in docs/reference.md: %s" % missing


def test_every_log_event_is_documented():
    doc = reference()
    events = logged_events()
    assert {"serving", "drain_begin", "stopped", "request"} <= events, \
        events
    missing = sorted(e for e in events if "| `%s` |" % e not in doc)
    assert not missing, "log events not in docs/reference.md: %s" % missing
    listed = set(re.findall(r"^\| `([a-z_]+)` \| [^|]*\| [^|]*\|$", doc,
                            re.M))
    stale = sorted(listed - events)
    assert not stale, "docs/reference.md lists events no code logs: %s" % \
        stale


if __name__ == "__main__":
    run([test_every_metric_is_documented, test_every_log_event_is_documented])
