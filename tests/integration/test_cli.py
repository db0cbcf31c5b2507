"""The command line (DESIGN.md, "Interfaces"): --help, bad values (exit 2,
one line naming the flag), unknown flags, GRACED_* environment variables
and their precedence, start-up failures (exit 1, a start_failed line
naming the cause), the text log format, --log-file, and the drain and
probe subcommands.
"""
import datetime
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time

from harness import GRACED, TIMEOUT, Graced, run

HOST = "127.0.0.1"
FLAGS = ("--listen", "--admin-listen", "--workers", "--drain-delay",
         "--shutdown-timeout", "--first-byte-grace", "--idle-timeout",
         "--request-timeout", "--max-body", "--max-connections",
         "--log-format", "--log-file", "--access-log", "--spool",
         "--upgrade-timeout", "--supervisor")


# ---------------------------------------------------------------- helpers

def clean_env(extra=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRACED_")}
    env.update(extra or {})
    return env


def graced(*args, env=None, timeout=10):
    """Runs the binary to completion (it must exit by itself)."""
    return subprocess.run([GRACED] + list(args), stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          env=clean_env(env), timeout=timeout)


def free_port():
    """A port nothing listens on (bound, then released)."""
    s = socket.socket()
    s.bind((HOST, 0))
    port = s.getsockname()[1]
    s.close()
    return port


def refused(port):
    try:
        socket.create_connection((HOST, port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


def json_lines(text):
    out = []
    for line in text.splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            out.append({"raw": line})
    return out


def wait_line(g, pred, timeout=TIMEOUT):
    """Waits for a log line (parsed or {"raw": text}) with pred true."""
    deadline = time.monotonic() + timeout
    with g.cond:
        while True:
            for line in g.lines:
                if pred(line):
                    return line
            if g.exited_at is not None:
                raise AssertionError("graced exited; log:\n" + g.log_text())
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("no such log line; log:\n" +
                                     g.log_text())
            g.cond.wait(left)


def wait_file_event(path, event, timeout=TIMEOUT, pred=None):
    """Polls a JSON log file (no event tells us it grew) until it holds a
    line with this event; returns it."""
    deadline = time.monotonic() + timeout
    while True:
        if os.path.exists(path):
            with open(path) as f:
                for line in json_lines(f.read()):
                    if line.get("event") == event and (pred is None or
                                                       pred(line)):
                        return line
        assert time.monotonic() < deadline, "no %r line in %s" % (event,
                                                                  path)
        time.sleep(0.02)


def ts_epoch(line):
    """The log line's "ts" (UTC, millisecond precision) as epoch seconds."""
    dt = datetime.datetime.strptime(line["ts"], "%Y-%m-%dT%H:%M:%S.%fZ")
    return dt.replace(tzinfo=datetime.timezone.utc).timestamp()


def healthz(port):
    c = http.client.HTTPConnection(HOST, port, timeout=TIMEOUT)
    try:
        c.request("GET", "/healthz")
        r = c.getresponse()
        return r.status, json.loads(r.read())
    finally:
        c.close()


# ---------------------------------------------------------------- help

def test_help():
    for args in (["--help"], ["serve", "--help"], ["-h"], ["help"],
                 ["serve", "--drain-delay", "3", "--help"]):
        p = graced(*args)
        assert p.returncode == 0, (args, p.returncode, p.stderr)
        out = p.stdout.decode()
        assert out.startswith("usage:"), (args, out[:200])
        for flag in FLAGS:
            assert flag in out, (args, flag)
        for word in ("drain", "probe", "upgrade", "USR2", "--version",
                     "GRACED_DRAIN_DELAY", "GRACED_MAX_BODY"):
            assert word in out, (args, word)
        assert p.stderr == b"", (args, p.stderr)


def test_version():
    # The package's version, as configure wrote it into graced.pc.
    pc = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(
        GRACED))), "graced.pc")
    with open(pc) as f:
        version = [l.split(":", 1)[1].strip() for l in f
                   if l.startswith("Version:")][0]
    for args in (["--version"], ["version"]):
        p = graced(*args)
        assert p.returncode == 0, (args, p.returncode, p.stderr)
        assert p.stdout.decode() == "graced %s\n" % version, p.stdout
        assert p.stderr == b"", p.stderr


def test_man_page_lists_every_flag():
    # graced(8) must keep up with the options tables: every flag --help
    # prints, with its variable, and every subcommand.
    man = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                       "man", "graced.8")
    with open(man) as f:
        text = f.read().replace("\\-", "-")
    out = graced("--help").stdout.decode()
    flags = re.findall(r"^  (--[a-z-]+) ", out, re.M)
    envs = re.findall(r"env (GRACED_[A-Z_]+)$", out, re.M)
    assert len(flags) == len(envs) >= len(FLAGS), (flags, envs)
    for word in flags + envs + ["drain", "probe", "upgrade", "--version",
                                "SIGTERM", "SIGUSR2", "EXIT STATUS",
                                "ENVIRONMENT", "FILES"]:
        assert word in text, word
    for flag, env in zip(flags, envs):
        # Each flag's entry names its own variable.
        entry = text.split(".BI " + flag + " ", 1)[1].split(".TP", 1)[0]
        assert env in entry, (flag, env, entry)


def test_harness_test_only_matching_nothing_fails():
    # A typo in TEST_ONLY must not pass for a green run.
    p = subprocess.run([sys.executable, "-B", os.path.abspath(__file__)],
                       env=dict(os.environ, TEST_ONLY="no_such_case"),
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=TIMEOUT)
    assert p.returncode == 1, (p.returncode, p.stdout)
    assert b"matches no test" in p.stdout, p.stdout


# ---------------------------------------------------------------- bad values

BAD = [
    (["--drain-delay", "x"], "--drain-delay"),
    (["--drain-delay=x"], "--drain-delay"),
    (["--drain-delay", "-1"], "--drain-delay"),
    (["--drain-delay", "nan"], "--drain-delay"),
    (["--drain-delay", ""], "--drain-delay"),
    (["--drain-delay"], "--drain-delay"),  # no value at all
    (["--max-body", "-1"], "--max-body"),
    (["--max-body", "1X"], "--max-body"),
    (["--max-body", "0"], "--max-body"),
    (["--max-body=10KB"], "--max-body"),
    (["--listen", "nohost"], "--listen"),
    (["--listen", "127.0.0.1:99999"], "--listen"),
    (["--listen", "127.0.0.1:"], "--listen"),
    (["--admin-listen", "localhost"], "--admin-listen"),
    (["--log-format", "xml"], "--log-format"),
    (["--workers", "x"], "--workers"),
    (["--workers", "-1"], "--workers"),
    (["--workers", "257"], "--workers"),
    (["--workers", "1K"], "--workers"),
    (["--drain-delay", "5", "--shutdown-timeout", "5"],
     "--shutdown-timeout"),
    (["--drain-delay", "10", "--shutdown-timeout", "3"],
     "--shutdown-timeout"),
    (["--shutdown-timeout", "0"], "--shutdown-timeout"),
    (["--max-connections", "0"], "--max-connections"),
    (["--max-connections", "ten"], "--max-connections"),
    (["--idle-timeout", "0"], "--idle-timeout"),
    (["--request-timeout", "1s"], "--request-timeout"),
    (["--first-byte-grace", "-2"], "--first-byte-grace"),
    (["--access-log", "maybe"], "--access-log"),
    (["--spool", ""], "--spool"),
]


def test_bad_values_exit_2():
    with tempfile.TemporaryDirectory(prefix="graced-cli-") as tmp:
        spool = os.path.join(tmp, "events.jsonl")
        port = free_port()
        for bad, flag in BAD:
            p = graced("serve", "--listen", "%s:%d" % (HOST, port),
                       "--admin-listen", "127.0.0.1:0", "--spool", spool,
                       "--workers", "1", *bad)
            err = p.stderr.decode()
            assert p.returncode == 2, (bad, p.returncode, err)
            lines = err.splitlines()
            assert len(lines) == 1, (bad, err)
            assert lines[0].startswith("graced: "), (bad, err)
            assert flag in lines[0], (bad, err)
            assert p.stdout == b"", (bad, p.stdout)
            # Nothing half-started: no spool file, nothing listening.
            assert not os.path.exists(spool), bad
            assert refused(port), bad
        # The message quotes the value it did not take.
        p = graced("serve", "--drain-delay", "x")
        assert p.stderr.decode() == \
            "graced: --drain-delay: 'x' is not a number\n", p.stderr
        # Ranges read as the flags are written: sizes with their suffix,
        # never in exponent notation.
        for args, want in (
                (["--max-body", "5G"], "--max-body: '5G' is out of range "
                 "(1 to 1G)"),
                (["--max-header-size", "100"], "--max-header-size: '100' "
                 "is out of range (1K to 16M)"),
                (["--max-connections", "2000000"], "--max-connections: "
                 "'2000000' is out of range (1 to 1000000)"),
                (["--drain-delay", "0.1", "--shutdown-timeout", "0.05"],
                 "--shutdown-timeout (0.05) must be longer than "
                 "--drain-delay (0.1)")):
            p = graced("serve", *args)
            assert p.stderr.decode() == "graced: %s\n" % want, p.stderr


def test_unknown_flag_exit_2():
    for args, word in ((["serve", "--bogus", "1"], "--bogus"),
                       (["--bogus=1"], "--bogus"),
                       (["serve", "stray"], "stray"),
                       (["frobnicate"], "frobnicate")):
        p = graced(*args)
        err = p.stderr.decode()
        assert p.returncode == 2, (args, p.returncode, err)
        assert len(err.splitlines()) == 1 and word in err, (args, err)
        assert p.stdout == b"", (args, p.stdout)


# ---------------------------------------------------------------- environment

def test_env_bad_value_names_variable():
    for var, value in (("GRACED_DRAIN_DELAY", "abc"),
                       ("GRACED_MAX_BODY", "-5"),
                       ("GRACED_LOG_FORMAT", "xml"),
                       ("GRACED_LISTEN", "nohost")):
        p = graced("serve", "--admin-listen", "127.0.0.1:0",
                   "--spool", "/nonexistent-graced-dir/x", env={var: value})
        err = p.stderr.decode()
        assert p.returncode == 2, (var, p.returncode, err)
        assert len(err.splitlines()) == 1, (var, err)
        assert var in err, (var, err)


def request_lines_after_drain(g):
    """Makes a few requests, drains, and returns the access log lines."""
    for path in ("/livez", "/healthz", "/nope"):
        g.request("GET", path)
    g.signal(signal.SIGTERM)
    assert g.wait_exit() == 0, g.log_text()
    return g.events("request")


def test_env_access_log_off():
    g = Graced("--drain-delay", "0.1", env={"GRACED_ACCESS_LOG": "off"})
    try:
        assert request_lines_after_drain(g) == []
        assert g.events("stopped"), "log incomplete"
    finally:
        g.close()
    # The flag wins over the variable.
    g = Graced("--drain-delay", "0.1", "--access-log", "on",
               env={"GRACED_ACCESS_LOG": "off"})
    try:
        lines = request_lines_after_drain(g)
        assert [l["path"] for l in lines] == ["/livez", "/healthz", "/nope"]
    finally:
        g.close()


def test_env_max_body_and_flag_override():
    body = json.dumps({"pad": "x" * 40}).encode()
    g = Graced(env={"GRACED_MAX_BODY": "16"})
    try:
        status, _, _ = g.request("POST", "/v1/events", body=body)
        assert status == 413, status
        status, _, _ = g.request("POST", "/v1/events", body=b'{"a":1}')
        assert status == 202, status
    finally:
        g.close()
    g = Graced("--max-body", "1K", env={"GRACED_MAX_BODY": "16"})
    try:
        status, _, _ = g.request("POST", "/v1/events", body=body)
        assert status == 202, status
    finally:
        g.close()
    # A variable for a flag with dashes, and a time with a fraction.
    g = Graced(env={"GRACED_DRAIN_DELAY": "0.3",
                    "GRACED_SHUTDOWN_TIMEOUT": "5"})
    try:
        t0 = time.monotonic()
        g.signal(signal.SIGTERM)
        stop = g.wait_event("drain_stop")
        assert 200 <= stop["elapsed_ms"] < 2000, stop
        assert g.wait_exit() == 0
        assert time.monotonic() - t0 < 3
    finally:
        g.close()


# ---------------------------------------------------------------- start-up

def test_address_in_use_exit_1():
    holder = socket.socket()
    holder.bind((HOST, 0))
    holder.listen(1)
    port = holder.getsockname()[1]
    try:
        with tempfile.TemporaryDirectory(prefix="graced-cli-") as tmp:
            spool = os.path.join(tmp, "events.jsonl")
            for which in ("--listen", "--admin-listen"):
                other = "--admin-listen" if which == "--listen" \
                    else "--listen"
                p = graced("serve", which, "%s:%d" % (HOST, port),
                           other, "127.0.0.1:0", "--spool", spool,
                           "--workers", "1")
                lines = json_lines(p.stderr.decode())
                assert p.returncode == 1, (which, p.returncode, lines)
                failed = [l for l in lines
                          if l.get("event") == "start_failed"]
                assert len(failed) == 1, (which, lines)
                cause = failed[0].get("cause", "")
                assert "%s:%d" % (HOST, port) in cause, (which, cause)
                assert "in use" in cause.lower(), (which, cause)
                assert not any(l.get("event") == "serving" for l in lines)
                assert all("raw" not in l for l in lines), lines
    finally:
        holder.close()


def test_second_instance_exit_1():
    """A second graced started by mistake on the port of a running one
    fails with exit 1, whatever the workers of either: with SO_REUSEPORT it
    used to join the first one's group and take part of its traffic."""
    for first, second in (("2", "2"), ("1", "2"), ("2", "1")):
        g = Graced("--workers", first)
        try:
            with tempfile.TemporaryDirectory(prefix="graced-cli-") as tmp:
                p = graced("serve", "--listen", "%s:%d" % (HOST, g.port),
                           "--admin-listen", "127.0.0.1:0", "--spool",
                           os.path.join(tmp, "events.jsonl"),
                           "--workers", second, timeout=15)
                lines = json_lines(p.stderr.decode())
                assert p.returncode == 1, (first, second, p.returncode,
                                           lines)
                failed = [l for l in lines
                          if l.get("event") == "start_failed"]
                assert len(failed) == 1 and "in use" in \
                    failed[0]["cause"].lower(), (first, second, lines)
                assert not any(l.get("event") == "serving" for l in lines)
            # The first instance still has the port to itself.
            for _ in range(20):
                assert g.request("GET", "/livez")[0] == 200
        finally:
            g.close()


def test_unwritable_spool_exit_1():
    with tempfile.TemporaryDirectory(prefix="graced-cli-") as tmp:
        port = free_port()
        for spool in (os.path.join(tmp, "no-such-dir", "events.jsonl"),
                      tmp):  # a directory is not a file either
            p = graced("serve", "--listen", "%s:%d" % (HOST, port),
                       "--admin-listen", "127.0.0.1:0", "--spool", spool,
                       "--workers", "1")
            lines = json_lines(p.stderr.decode())
            assert p.returncode == 1, (spool, p.returncode, lines)
            failed = [l for l in lines if l.get("event") == "start_failed"]
            assert len(failed) == 1, lines
            assert spool in failed[0].get("cause", ""), failed
            assert "spool" in failed[0]["cause"], failed
            assert not any(l.get("event") == "serving" for l in lines)
            assert refused(port), "listener left behind"
        # The variable sets the spool too.
        bad = os.path.join(tmp, "nope", "env.jsonl")
        p = graced("serve", "--listen", "127.0.0.1:0",
                   "--admin-listen", "127.0.0.1:0", env={"GRACED_SPOOL": bad})
        assert p.returncode == 1, p.stderr
        assert bad in p.stderr.decode(), p.stderr


# ---------------------------------------------------------------- logs

def test_text_log_format():
    g = Graced("--log-format", "text", "--drain-delay", "0.1", wait=False)
    try:
        serving = wait_line(g, lambda l: " serving " in l.get("raw", ""))
        fields = dict(kv.split("=", 1) for kv in
                      serving["raw"].split()[2:] if "=" in kv)
        g.port = int(fields["listen"].rsplit(":", 1)[1])
        g.admin_port = int(fields["admin"].rsplit(":", 1)[1])
        assert g.request("GET", "/livez")[0] == 200
        assert g.request("GET", "/nope")[0] == 404
        req = wait_line(g, lambda l: " request " in l.get("raw", "") and
                        "path=/nope" in l["raw"])
        assert "status=404" in req["raw"] and "method=GET" in req["raw"]
        g.signal(signal.SIGTERM)
        assert g.wait_exit() == 0
        text = [l.get("raw") for l in g.lines]
        assert all(t is not None for t in text), "a JSON line: %r" % text
        events = [t.split()[1] for t in text]
        for ev in ("serving", "request", "drain_begin", "drain_stop",
                   "listener_closed", "spool_closed", "stopped"):
            assert ev in events, (ev, events)
        # Each line starts with an ISO timestamp.
        for t in text:
            datetime.datetime.strptime(t.split()[0], "%Y-%m-%dT%H:%M:%S.%fZ")
    finally:
        g.close()


def test_log_file():
    tmp = tempfile.TemporaryDirectory(prefix="graced-cli-")
    path = os.path.join(tmp.name, "graced.log")
    g = Graced("--log-file", path, "--drain-delay", "0.1", wait=False)
    try:
        serving = wait_file_event(path, "serving")
        g.port = int(serving["listen"].rsplit(":", 1)[1])
        assert g.request("GET", "/livez")[0] == 200
        wait_file_event(path, "request", pred=lambda l: l["path"] == "/livez")
        # SIGHUP reopens it: after a rename, lines go to a new file at the
        # configured path.
        os.rename(path, path + ".1")
        g.signal(signal.SIGHUP)
        wait_file_event(path, "log_reopened")
        assert g.request("GET", "/healthz")[0] == 200
        wait_file_event(path, "request",
                        pred=lambda l: l["path"] == "/healthz")
        g.signal(signal.SIGTERM)
        assert g.wait_exit() == 0
        with open(path + ".1") as f:
            old = [l.get("event") for l in json_lines(f.read())]
        with open(path) as f:
            new = json_lines(f.read())
        assert "serving" in old and "log_reopened" not in old, old
        assert [l.get("event") for l in new][-1] == "stopped", new
        assert "serving" not in [l.get("event") for l in new], new
        assert all("raw" not in l for l in new), new
        # Nothing on stderr.
        assert g.lines == [], g.log_text()
    finally:
        g.close()
        tmp.cleanup()


# ---------------------------------------------------------------- drain

def test_drain_subcommand():
    delay = 1.0
    g = Graced("--drain-delay", str(delay), "--shutdown-timeout", "10")
    try:
        assert healthz(g.port)[0] == 200
        t0 = time.monotonic()
        p = graced("drain", "--admin", "%s:%d" % (HOST, g.admin_port))
        took = time.monotonic() - t0
        assert p.returncode == 0, (p.returncode, p.stderr)
        assert took < delay, "drain without --wait waited: %.2fs" % took
        ev = g.wait_event("drain_begin")
        assert ev.get("cause") == "admin", ev
        status, body = healthz(g.port)
        assert status == 503 and body["status"] == "draining", body
        assert g.wait_exit() == 0, g.log_text()
    finally:
        g.close()


def test_drain_admin_from_env():
    g = Graced("--drain-delay", "0.5", "--shutdown-timeout", "10")
    try:
        p = graced("drain", env={"GRACED_ADMIN_LISTEN":
                                 "%s:%d" % (HOST, g.admin_port)})
        assert p.returncode == 0, (p.returncode, p.stderr)
        g.wait_event("drain_begin")
        assert healthz(g.port)[0] == 503
        assert g.wait_exit() == 0
    finally:
        g.close()


def test_drain_wait_returns_after_listener_closed():
    delay = 1.0
    g = Graced("--drain-delay", str(delay), "--shutdown-timeout", "10")
    try:
        t0 = time.monotonic()
        p = graced("drain", "--admin", "%s:%d" % (HOST, g.admin_port),
                   "--wait")
        wall_return = time.time()
        took = time.monotonic() - t0
        assert p.returncode == 0, (p.returncode, p.stderr)
        # The instance answered (it did not just vanish): the reply is
        # flushed before it exits even with nothing else open.
        assert b"listeners closed" in p.stdout, (p.stdout, p.stderr)
        begin = g.wait_event("drain_begin")
        closed = g.wait_event("listener_closed")
        # ts has millisecond precision, truncated: never later than the
        # moment it stands for.
        assert ts_epoch(closed) <= wall_return, \
            (closed["ts"], wall_return)
        assert ts_epoch(begin) + delay * 0.9 <= wall_return
        assert took >= delay * 0.9, took
        assert took < delay + 5, took
        assert g.wait_exit() == 0, g.log_text()
    finally:
        g.close()


def test_drain_nothing_listening_exit_0():
    port = free_port()
    for extra in ([], ["--wait"]):
        t0 = time.monotonic()
        p = graced("drain", "--admin", "%s:%d" % (HOST, port), *extra)
        assert p.returncode == 0, (extra, p.returncode, p.stderr)
        assert time.monotonic() - t0 < 5


def test_drain_bad_usage_exit_2():
    for args in (["--bogus"], ["--admin", "nohost"], ["--timeout", "x"],
                 ["--timeout", "0"], ["--admin"], ["extra"]):
        p = graced("drain", *args)
        assert p.returncode == 2, (args, p.returncode, p.stderr)
        assert p.stderr.strip(), args


# ---------------------------------------------------------------- probe

def probe(*args):
    return graced("probe", *args).returncode


def test_probe():
    g = Graced("--drain-delay", "1", "--shutdown-timeout", "10")
    try:
        base = "http://%s:%d" % (HOST, g.port)
        assert probe(base + "/healthz") == 0
        assert probe(base + "/livez", "--timeout", "3") == 0
        assert probe(base + "/nope") == 1  # 404
        assert probe("http://%s:%d/healthz" % (HOST, g.admin_port)) == 0
        status, _, _ = g.request("POST", "/admin/drain", admin=True)
        assert status == 202, status
        g.wait_event("drain_begin")
        assert probe(base + "/healthz") == 1  # 503 while draining
        assert probe(base + "/livez") == 0  # alive all the same
        assert g.wait_exit() == 0, g.log_text()
        # Gone: refused, exit 1.
        assert probe(base + "/healthz") == 1
    finally:
        g.close()


def test_probe_closed_port_exit_1():
    port = free_port()
    t0 = time.monotonic()
    assert probe("http://%s:%d/healthz" % (HOST, port)) == 1
    assert time.monotonic() - t0 < 5


def test_probe_bad_usage_exit_2():
    for args in (["ftp://127.0.0.1/healthz"], ["https://127.0.0.1:1/"],
                 ["http://"], ["http:///healthz"], ["127.0.0.1:8080"],
                 ["--timeout", "x"], ["--bogus"],
                 ["http://127.0.0.1:99999/"]):
        p = graced("probe", *args)
        assert p.returncode == 2, (args, p.returncode, p.stderr)
        assert p.stderr.strip(), args


if __name__ == "__main__":
    run([test_help, test_version, test_man_page_lists_every_flag,
         test_harness_test_only_matching_nothing_fails,
         test_bad_values_exit_2, test_unknown_flag_exit_2,
         test_env_bad_value_names_variable, test_env_access_log_off,
         test_env_max_body_and_flag_override, test_address_in_use_exit_1,
         test_second_instance_exit_1, test_unwritable_spool_exit_1, test_text_log_format, test_log_file,
         test_drain_subcommand, test_drain_admin_from_env,
         test_drain_wait_returns_after_listener_closed,
         test_drain_nothing_listening_exit_0, test_drain_bad_usage_exit_2,
         test_probe, test_probe_closed_port_exit_1,
         test_probe_bad_usage_exit_2])
