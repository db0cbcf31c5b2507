"""Socket activation and the notify protocol (issue 9, tests 3, 4 and 6).

The test plays systemd: it binds and listens on 127.0.0.1:0 itself, keeps
its own copy of the socket throughout, and hands it to graced as fd 3 with
LISTEN_FDS=1, LISTEN_FDNAMES=http and LISTEN_PID set to graced's pid.

3. graced is restarted three times under load (with --drain-delay 0.5, see
   DRAIN_DELAY) (keep-alive clients POSTing
   events with ids and GETting /livez, through test_haproxy's Load, plus
   clients opening a new connection per request), with a deliberate gap
   between the old process's exit and the new one's start: not one request
   may be refused, reset or fail, and every 202 event is in the spool
   exactly once. The queue waits for the next process, and no process
   left a filter or a shrunk backlog on the socket. With one and with two
   workers (two workers share the one passed socket).
4. The READY=1 (with MAINPID), RELOADING=1 (with MONOTONIC_USEC) and
   READY=1 around an upgrade, and STOPPING=1 messages, and STATUS= lines,
   arrive in order on a test-owned NOTIFY_SOCKET (a path, and an abstract
   name); graced serves as usual without NOTIFY_SOCKET and with one that
   does not exist.
6. A predecessor killed with SIGKILL in the middle of its drain, once it had
   attached the SYN filter and shrunk the backlog to 0 (the test does both
   to the socket, as the old drain did), must not hurt the next process: it
   heals the socket and serves new connections.
"""
import ctypes
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

from harness import Graced, recv_response, run, TIMEOUT
from test_haproxy import Load, spool_ids

HOST = "127.0.0.1"
GAP = 0.3          # seconds between the old process's exit and the next start
# With no drain delay the drain closes idle keep-alive connections at once,
# and a client sending its next request at that moment reads EOF (measured:
# 13 and 14 of about 450 requests over three restarts). Half a second lets
# every keep-alive client get its "Connection: close" first; it costs
# nothing here, since the old process keeps accepting on the shared socket
# meanwhile. docs/systemd.md says the same.
DRAIN_DELAY = "0.5"
FRESH_THREADS = 3  # clients that open a new connection per request

# graced must find the socket at fd 3 and LISTEN_PID equal to its own pid,
# which only exists once forked: this wrapper (the process that becomes
# graced, as exec keeps the pid) moves the inherited socket to fd 3, sets
# LISTEN_PID to its own pid and execs graced, as systemd does between fork
# and exec.
WRAP = """\
import fcntl, os, sys
fds = [int(f) for f in sys.argv[1].split(",")]
# Out of the way first: a passed fd may already sit at 3 or 4.
high = [fcntl.fcntl(f, fcntl.F_DUPFD, 100) for f in fds]
for f in fds:
    os.close(f)
for i, f in enumerate(high):
    os.dup2(f, 3 + i)
    os.close(f)
os.environ["LISTEN_PID"] = str(os.getpid())
os.execv(sys.argv[2], sys.argv[2:])
"""


def owned_socket(backlog=4096):
    """The listening socket systemd's graced.socket would make."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind((HOST, 0))
    s.listen(backlog)
    return s


def activated(socks, *args, env=None, names="http", **kw):
    """graced serving the test-owned socket (or list of sockets), passed
    as systemd passes them: from fd 3, named by names."""
    if not isinstance(socks, list):
        socks = [socks]
    fds = [s.fileno() for s in socks]
    full_env = {"LISTEN_FDS": str(len(fds)), "LISTEN_FDNAMES": names}
    full_env.update(env or {})
    return Graced(*args, env=full_env, pass_fds=fds,
                  wrap=[sys.executable, "-c", WRAP,
                        ",".join(map(str, fds))], **kw)


def socket_harm(sock):
    """What a holder left on sock that would hurt the next one: a socket
    filter (SO_GET_FILTER, 26, reads back its code) or a backlog other than
    the test's 4096 (ss shows a listener's backlog as Send-Q)."""
    harm = []
    if sock.getsockopt(socket.SOL_SOCKET, 26, 256):
        harm.append("a socket filter")
    if shutil.which("ss"):
        out = subprocess.run(
            ["ss", "-ltnH", "sport = :%d" % sock.getsockname()[1]],
            capture_output=True, text=True, check=True).stdout.split()
        if out[2] != "4096":
            harm.append("backlog %s" % out[2])
    return harm


class Fresh:
    """Clients that open a new connection for each GET /livez (HTTP/1.0
    style, Connection: close): each connect must be accepted and answered,
    whichever process is behind the socket at the moment."""

    def __init__(self, port):
        self.port = port
        self.lock = threading.Lock()
        self.ok = 0
        self.failed = []
        self.stop_ev = threading.Event()
        self.threads = [threading.Thread(target=self._loop, daemon=True)
                        for _ in range(FRESH_THREADS)]
        for t in self.threads:
            t.start()

    def _loop(self):
        while not self.stop_ev.is_set():
            try:
                s = socket.create_connection((HOST, self.port), timeout=10)
                s.sendall(b"GET /livez HTTP/1.1\r\nHost: t\r\n"
                          b"Connection: close\r\n\r\n")
                data = b""
                while True:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                s.close()
                good = data.startswith(b"HTTP/1.1 200") and b"alive" in data
                with self.lock:
                    if good:
                        self.ok += 1
                    else:
                        self.failed.append(("bad answer", data[:100]))
            except Exception as e:
                with self.lock:
                    self.failed.append((Load.classify(e), repr(e)))

    def stop(self):
        self.stop_ev.set()
        for t in self.threads:
            t.join(15)
        assert not any(t.is_alive() for t in self.threads), "a client hung"


def restarts_under_load(workers):
    sock = owned_socket()
    port = sock.getsockname()[1]
    tmp = tempfile.TemporaryDirectory(prefix="graced-act-")
    spool = os.path.join(tmp.name, "events.jsonl")
    args = ("--workers", str(workers), "--drain-delay", DRAIN_DELAY)
    graceds = [activated(sock, *args, spool=spool)]
    load = fresh = None
    try:
        g = graceds[0]
        assert g.port == port, "graced serves %d, not the passed %d" % (
            g.port, port)
        adopted = g.wait_event("listeners_adopted")
        assert adopted["http"] == ["%s:%d" % (HOST, port)], adopted
        load = Load(port, "act%d" % workers)
        fresh = Fresh(port)
        load.wait_ok(100)
        for _ in range(3):
            g.signal(signal.SIGTERM)
            assert g.wait_exit() == 0, g.log_text()
            assert not socket_harm(sock), (
                "graced left %s on a socket it shares" % socket_harm(sock))
            # The gap: nobody accepts, the queue holds what arrives.
            time.sleep(GAP)
            g = activated(sock, *args, spool=spool)
            graceds.append(g)
            assert g.port == port
            load.wait_ok(load.ok_count() + 100)
        load.stop()
        fresh.stop()
        g.signal(signal.SIGTERM)
        assert g.wait_exit() == 0, g.log_text()
        failures = sum(load.failed.values()) + len(fresh.failed)
        print("  [workers %d] requests ok %d + %d on new connections, "
              "failed %d, slowest keep-alive request %.0f ms" % (
                  workers, load.ok, fresh.ok, failures, load.max_ms))
        assert failures == 0, "failed requests: %r %r" % (
            load.failures[:5], fresh.failed[:5])
        assert fresh.ok > 0, "no new-connection client was served"
        ids = spool_ids(spool)
        assert len(ids) == len(set(ids)), "an event is in the spool twice"
        assert set(ids) == load.accepted, (
            "spool and 202 answers differ: %d missing, %d extra" % (
                len(load.accepted - set(ids)), len(set(ids) - load.accepted)))
    finally:
        for client in (load, fresh):
            if client is not None:
                client.stop_ev.set()
        for each in graceds:
            each.close()
        sock.close()
        tmp.cleanup()


def test_restarts_keep_the_queue_workers1():
    """3. Three restarts with a gap, one worker: 0 refused, 0 reset."""
    restarts_under_load(1)


def test_restarts_keep_the_queue_workers2():
    """3. The same with two workers sharing the one passed socket."""
    restarts_under_load(2)


def test_admin_and_several_http_sockets_adopted():
    """Names: two "http" sockets and an "admin" one. One worker asked for,
    yet each http socket is served (a worker each), the admin listener is
    the passed one, and --listen/--admin-listen are reported ignored."""
    socks = [owned_socket(), owned_socket(), owned_socket()]
    g = activated(socks, "--workers", "1", "--drain-delay", "0",
                  names="http:admin:http")
    try:
        ports = [s.getsockname()[1] for s in socks]
        ev = g.wait_event("listeners_adopted")
        assert ev["http"] == ["%s:%d" % (HOST, ports[0]),
                              "%s:%d" % (HOST, ports[2])], ev
        assert ev["admin"] == "%s:%d" % (HOST, ports[1]), ev
        assert ev["ignored"] == ["--listen", "--admin-listen"], ev
        assert g.wait_event("serving")["workers"] == 2
        assert g.admin_port == ports[1]
        for port in (ports[0], ports[2]):
            # Several connections: each must be served, none left queued.
            for _ in range(4):
                c = socket.create_connection((HOST, port), timeout=5)
                c.sendall(b"GET /livez HTTP/1.1\r\nHost: t\r\n"
                          b"Connection: close\r\n\r\n")
                assert recv_response(c, 5)[0] == 200
                c.close()
        status, body = g.json("GET", "/healthz", admin=True)
        assert status == 200, body
        g.signal(signal.SIGTERM)
        assert g.wait_exit() == 0, g.log_text()
    finally:
        g.close()
        for s in socks:
            s.close()


def test_bad_activation_refused():
    """A passed fd that is not a listening socket, or an unknown name,
    fails the start with exit 1 and says why; LISTEN_PID for another
    process is ignored (graced binds as usual)."""
    plain = socket.socket()  # bound nowhere, not listening
    g = activated(plain, wait=False)
    try:
        ev = g.wait_event("start_failed")
        assert "not a listening stream socket" in ev["error"], ev
        assert g.wait_exit() == 1
    finally:
        g.close()
        plain.close()
    g2 = None
    socks = [owned_socket(), owned_socket()]
    g = activated(socks, names="metrics:http", wait=False)
    try:
        ev = g.wait_event("start_failed")
        assert "metrics" in ev["error"], ev
        assert g.wait_exit() == 1
        g2 = Graced("--drain-delay", "0",
                    env={"LISTEN_PID": "1", "LISTEN_FDS": "1"})
        assert not g2.events("listeners_adopted")
        assert g2.port != socks[1].getsockname()[1]
        g2.signal(signal.SIGTERM)
        assert g2.wait_exit() == 0
    finally:
        g.close()
        if g2 is not None:
            g2.close()
        for s in socks:
            s.close()


def notify_receiver(abstract):
    """The test's NOTIFY_SOCKET: a datagram socket, and its name."""
    r = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if abstract:
        name = "@graced-test-%d-%d" % (os.getpid(), time.monotonic_ns())
        r.bind("\0" + name[1:])
    else:
        tmp = tempfile.mkdtemp(prefix="graced-notify-")
        name = os.path.join(tmp, "notify")
        r.bind(name)
    r.settimeout(TIMEOUT)
    return r, name


def messages_in_order(abstract):
    r, name = notify_receiver(abstract)
    g = Graced("--drain-delay", "0.2", env={"NOTIFY_SOCKET": name})
    try:
        msgs = [r.recv(4096).decode()]
        assert g.request("GET", "/livez")[0] == 200
        # An upgrade: RELOADING=1 (with the time) when it begins, READY=1
        # when the new generation serves.
        g.signal(signal.SIGUSR2)
        msgs.append(r.recv(4096).decode())
        msgs.append(r.recv(4096).decode())
        g.wait_event("upgrade_ready")
        g.signal(signal.SIGTERM)
        assert g.wait_exit() == 0, g.log_text()
        r.settimeout(0.5)
        try:
            while True:
                msgs.append(r.recv(4096).decode())
        except socket.timeout:
            pass
        lines = [m.split("\n") for m in msgs]
        print("  messages: %r" % msgs)
        # The supervisor is the main PID, and the only sender.
        assert "READY=1" in lines[0], msgs
        assert "MAINPID=%d" % g.proc.pid in lines[0], msgs
        assert "RELOADING=1" in lines[1], msgs
        usec = [l for l in lines[1] if l.startswith("MONOTONIC_USEC=")]
        assert usec and 0 < int(usec[0].split("=")[1]) <= \
            time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000, msgs
        assert "READY=1" in lines[2], msgs
        stopping = [i for i, m in enumerate(lines) if "STOPPING=1" in m]
        assert stopping and stopping[0] > 2, msgs
        assert not any("READY=1" in m or "RELOADING=1" in m
                       for m in lines[3:]), msgs
        status = [l for m in lines for l in m if l.startswith("STATUS=")]
        assert status[0].startswith("STATUS=serving on 127.0.0.1:%d" %
                                    g.port), status
        assert status[1] == "STATUS=upgrading to generation 2", status
        assert status[2].startswith("STATUS=serving on") and \
            "generation 2" in status[2], status
        assert any(s.startswith("STATUS=draining (SIGTERM)")
                   for s in status), status
        assert status[-1] == "STATUS=stopped (exit 0)", status
        assert not g.events("notify_failed"), g.log_text()
    finally:
        g.close()
        r.close()
        if not abstract:
            os.unlink(name)
            os.rmdir(os.path.dirname(name))


def test_notify_messages_in_order():
    """4. READY=1 with MAINPID, RELOADING=1 and READY=1 around an upgrade,
    then STOPPING=1, with STATUS= lines, on a NOTIFY_SOCKET path."""
    messages_in_order(False)


def test_notify_abstract_socket():
    """4. The same on an abstract NOTIFY_SOCKET ("@name")."""
    messages_in_order(True)


def test_no_notify_socket_or_a_missing_one():
    """4. graced serves as usual without NOTIFY_SOCKET, and with one that
    names nothing (the failure is logged once, the drain goes on)."""
    missing = os.path.join(tempfile.gettempdir(), "graced-no-such-%d" %
                           os.getpid())
    for env in ({"NOTIFY_SOCKET": ""}, {"NOTIFY_SOCKET": missing}):
        g = Graced("--drain-delay", "0", env=env)
        try:
            assert g.request("GET", "/livez")[0] == 200
            g.signal(signal.SIGTERM)
            assert g.wait_exit() == 0, g.log_text()
            failed = g.events("notify_failed")
            if env["NOTIFY_SOCKET"]:
                assert len(failed) == 1, g.log_text()
                assert failed[0]["socket"] == missing
            else:
                assert not failed, g.log_text()
        finally:
            g.close()


def attach_syn_filter(sock):
    """What the old drain did to its listener: the classic BPF program of
    listener.c that drops SYNs (SO_ATTACH_FILTER, 26 on Linux)."""
    code = [(0x30, 0, 0, 13),          # ld [13]: the TCP flags
            (0x54, 0, 0, 0x12),        # and #SYN|ACK
            (0x15, 0, 1, 0x02),        # jeq #SYN
            (0x06, 0, 0, 0),           # ret #0: drop
            (0x06, 0, 0, 0xffffffff)]  # ret #-1: pass
    prog = ctypes.create_string_buffer(
        b"".join(struct.pack("HBBI", *c) for c in code))
    fprog = struct.pack("HxxxxxxQ", len(code), ctypes.addressof(prog))
    sock.setsockopt(socket.SOL_SOCKET, 26, fprog)


def connects(port, timeout):
    """Whether a GET on a new connection is answered within timeout."""
    try:
        c = socket.create_connection((HOST, port), timeout=timeout)
        c.sendall(b"GET /livez HTTP/1.1\r\nHost: t\r\n"
                  b"Connection: close\r\n\r\n")
        ok = recv_response(c, timeout)[0] == 200
        c.close()
        return ok
    except OSError:
        return False


def test_predecessor_killed_mid_drain_leaves_no_harm():
    """6. The predecessor drains (a long drain delay), and is killed with
    SIGKILL after the filter and backlog 0 were put on the socket (by the
    test, as the old drain did). The next process heals the socket and
    serves new connections at once; unhealed, every SYN would be dropped."""
    sock = owned_socket()
    port = sock.getsockname()[1]
    g = activated(sock, "--drain-delay", "10")
    try:
        assert connects(port, 5)
        g.signal(signal.SIGTERM)
        g.wait_event("drain_begin")
        attach_syn_filter(sock)
        sock.listen(0)
        g.proc.send_signal(signal.SIGKILL)
        g.wait_exit()
        # The harm is real: nobody may connect while the filter is on.
        assert not connects(port, 1), "the SYN filter did not take"
    finally:
        g.close()
    g = activated(sock, "--drain-delay", "0")
    try:
        assert not socket_harm(sock), socket_harm(sock)
        for _ in range(20):
            assert connects(port, 5), "the successor does not get SYNs"
        g.signal(signal.SIGTERM)
        assert g.wait_exit() == 0, g.log_text()
    finally:
        g.close()
        sock.close()


if __name__ == "__main__":
    run([
        test_restarts_keep_the_queue_workers1,
        test_restarts_keep_the_queue_workers2,
        test_admin_and_several_http_sockets_adopted,
        test_bad_activation_refused,
        test_notify_messages_in_order,
        test_notify_abstract_socket,
        test_no_notify_socket_or_a_missing_one,
        test_predecessor_killed_mid_drain_leaves_no_harm,
    ])
