"""The systemd units in deploy/systemd/ (docs/systemd.md): they parse
(`systemd-analyze verify`, skipped where the tool is missing), hold the
invariants graced relies on (Type=notify, the socket named "http",
TimeoutStopSec above the drain delay plus the shutdown timeout, no
Type=notify-reload for systemd 252, an ExecReload= that runs graced upgrade
on the unit's admin address and waits long enough), and graced started
with exactly the unit's ExecStart flags, on a socket passed as
graced.socket passes it, serves, tells NOTIFY_SOCKET it is ready, and
upgrades with the unit's ExecReload command."""
import os
import shlex
import shutil
import signal
import subprocess
import tempfile

from harness import GRACED, SkipTest, run
from test_activation import activated, notify_receiver, owned_socket

UNITS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                     "deploy", "systemd")
# graced's defaults, for flags the unit leaves out.
DEFAULTS = {"--drain-delay": "5", "--shutdown-timeout": "25",
            "--upgrade-timeout": "30"}
# systemd's DefaultTimeoutStartSec, which bounds a reload too.
START_TIMEOUT = "90"
# A new generation serves this long beside the old one before the old one
# hands over (SUPERVISOR_PROBATION_MS).
PROBATION = 1.0


def unit(name):
    """section -> {key: [values]} of a unit file; continued lines joined."""
    sections, cur = {}, None
    with open(os.path.join(UNITS, name)) as f:
        text = f.read().replace("\\\n", " ")
    for line in text.splitlines():
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            cur = sections.setdefault(line.strip("[]"), {})
            continue
        key, value = line.split("=", 1)
        cur.setdefault(key.strip(), []).append(value.strip())
    return sections


def one(section, key):
    values = section.get(key, [])
    assert len(values) == 1, "%s: %r" % (key, values)
    return values[0]


def exec_start():
    """The ExecStart command line, split as systemd would."""
    return shlex.split(one(unit("graced.service")["Service"], "ExecStart"))


def exec_reload():
    return shlex.split(one(unit("graced.service")["Service"], "ExecReload"))


def flag(argv, name):
    for i, a in enumerate(argv):
        if a == name:
            return argv[i + 1]
        if a.startswith(name + "="):
            return a.split("=", 1)[1]
    return DEFAULTS.get(name)


def seconds(value):
    """systemd time spans as graced.service writes them: "31", "31s"."""
    return float(value.rstrip("s"))


def test_units_parse():
    """systemd-analyze verify accepts both units (the binary path pointed
    at the built graced, man pages not looked up)."""
    tool = shutil.which("systemd-analyze")
    if tool is None:
        raise SkipTest("systemd-analyze missing")
    with tempfile.TemporaryDirectory(prefix="graced-units-") as d:
        for name in ("graced.service", "graced.socket"):
            with open(os.path.join(UNITS, name)) as f:
                text = f.read().replace("/usr/local/bin/graced",
                                        os.path.abspath(GRACED))
            with open(os.path.join(d, name), "w") as f:
                f.write(text)
        r = subprocess.run([tool, "verify", "--man=no", "graced.socket",
                            "graced.service"], cwd=d, capture_output=True,
                           text=True, timeout=60)
        assert r.returncode == 0 and not r.stderr.strip(), r.stderr


def test_service_invariants():
    s = unit("graced.service")
    svc = s["Service"]
    assert one(svc, "Type") == "notify", "READY=1 must be awaited"
    assert one(svc, "NotifyAccess") in ("main", "all")
    assert one(svc, "KillMode") == "mixed"
    assert "graced.socket" in " ".join(s["Unit"].get("Requires", []))
    argv = exec_start()
    assert argv[0] == "/usr/local/bin/graced" and argv[1] == "serve", argv
    assert "--listen" not in argv, "the public socket is graced.socket's"
    budget = (float(flag(argv, "--drain-delay")) +
              float(flag(argv, "--shutdown-timeout")))
    stop = seconds(one(svc, "TimeoutStopSec"))
    assert stop > budget, "TimeoutStopSec %s must exceed drain delay + " \
        "shutdown timeout (%s)" % (stop, budget)
    # Debian 12 has systemd 252: Type=notify-reload needs 253, so
    # `systemctl reload` runs graced upgrade, which waits for the result.
    reload = exec_reload()
    assert reload[:2] == ["/usr/local/bin/graced", "upgrade"], reload
    assert flag(reload, "--admin") == flag(argv, "--admin-listen"), \
        "graced upgrade must reach the admin listener ExecStart sets"
    wait = float(flag(reload, "--timeout"))
    needed = float(flag(argv, "--upgrade-timeout")) + PROBATION
    assert wait > needed, "--timeout %s must exceed --upgrade-timeout + " \
        "the probation (%s)" % (wait, needed)
    start = seconds(svc.get("TimeoutStartSec", [START_TIMEOUT])[-1])
    assert wait < start, "TimeoutStartSec %s bounds the reload: above " \
        "--timeout %s" % (start, wait)


def test_socket_invariants():
    sock = unit("graced.socket")["Socket"]
    assert one(sock, "FileDescriptorName") == "http"
    assert one(sock, "Service") == "graced.service"
    assert int(one(sock, "Backlog")) >= 128
    assert len(sock.get("ListenStream", [])) == 1, \
        "one name per socket unit: a second stream would be named http too"


def test_exec_start_serves_activated():
    """graced with the unit's own flags (admin port and spool moved into
    the test's reach) on a passed socket: adopts it, says READY=1, upgrades
    with the unit's ExecReload (RELOADING=1, then READY=1), drains on
    SIGTERM."""
    argv = exec_start()[2:]
    reload = exec_reload()
    tmp = tempfile.TemporaryDirectory(prefix="graced-unit-")
    swap = {"--admin-listen": "127.0.0.1:0",
            "--spool": os.path.join(tmp.name, "events.jsonl")}
    args = [swap.get(argv[i - 1], a) if i > 0 else a
            for i, a in enumerate(argv)]
    sock = owned_socket()
    r, name = notify_receiver(True)
    g = activated(sock, *args, env={"NOTIFY_SOCKET": name})
    try:
        assert g.port == sock.getsockname()[1]
        assert "READY=1" in r.recv(4096).decode().split("\n")
        assert g.request("GET", "/livez")[0] == 200
        # systemctl reload: the unit's ExecReload, pointed at the admin
        # port the test moved.
        cmd = [GRACED] + [
            "127.0.0.1:%d" % g.admin_port if reload[i - 1] == "--admin"
            else a for i, a in enumerate(reload) if i > 0]
        p = subprocess.run(cmd, capture_output=True, text=True,
                           timeout=float(flag(reload, "--timeout")) + 10)
        assert p.returncode == 0, (p.stdout, p.stderr, g.log_text())
        assert "generation 2 serves" in p.stdout, p.stdout
        assert "RELOADING=1" in r.recv(4096).decode().split("\n")
        assert "READY=1" in r.recv(4096).decode().split("\n")
        g.wait_event("generation_exit", pred=lambda l: l["role"] == "old")
        assert g.request("GET", "/livez")[0] == 200
        g.signal(signal.SIGTERM)
        assert "STOPPING=1" in r.recv(4096).decode().split("\n")
        assert g.wait_exit() == 0, g.log_text()
    finally:
        g.close()
        r.close()
        sock.close()
        tmp.cleanup()


if __name__ == "__main__":
    run([
        test_units_parse,
        test_service_invariants,
        test_socket_invariants,
        test_exec_start_serves_activated,
    ])
