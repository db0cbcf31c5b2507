#!/usr/bin/env python3
"""Worst-case memory per connection at graced's input limits: N connections
each push the most one connection can make graced hold, and graced's
resident memory (VmRSS) is reported per connection and in total, beside
what the limits predict. See bench/README.md, "Memory at the limits".

    GRACED_BIN=src/graced python3 bench/memory.py

Each connection sends a request head of --max-header-size bytes made of as
many header lines as graced takes (100: each line costs evhttp about 113
bytes besides its text), Content-Length: --max-body, and all of the body but its last byte,
then never reads: evhttp keeps the parsed head and holds the body in the
connection's input until it is whole, up to the input cap (--max-header-size
+ --max-body). Pipelining more behind it cannot add to that: the input cap
stops reading.

Environment:
    GRACED_BIN        the daemon (default: ./src/graced)
    BENCH_MEM_CONNS   connections (default 1000)
    BENCH_MEM_HEADER  --max-header-size (default 16384)
    BENCH_MEM_BODY    --max-body (default 1048576)

Standard library only; loopback only; graced is killed on the way out.
"""

import json
import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time

CONNS = int(os.environ.get("BENCH_MEM_CONNS", "1000"))
HEADER = int(os.environ.get("BENCH_MEM_HEADER", "16384"))
BODY = int(os.environ.get("BENCH_MEM_BODY", "1048576"))
KiB = 1024
FIELDS = 100  # FRAMING_MAX_FIELDS in src/lib/framing.h


def children(pid):
    with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
        return [int(k) for k in f.read().split()]


def rss(pid):
    """VmRSS of pid and its children: graced's supervisor and the
    generation that serves."""
    total = 0
    for p in [pid] + children(pid):
        with open("/proc/%d/status" % p) as f:
            total += next(int(line.split()[1]) * KiB for line in f
                          if line.startswith("VmRSS:"))
    return total


def worst_request():
    """A head of exactly HEADER bytes as evhttp counts them (lines without
    CRLF) in as many field lines as graced takes (FIELDS: evhttp spends
    about 113 bytes on each), Content-Length BODY, and BODY - 1 body
    bytes."""
    first = [b"POST /v1/events HTTP/1.1", b"Host: x",
             b"Content-Length: %d" % BODY]
    used = sum(len(l) for l in first)
    n = FIELDS - 2
    size = (HEADER - used) // n
    lines = first + [b"a:" + b"v" * (size - 2)] * n
    return b"\r\n".join(lines) + b"\r\n\r\n" + b"x" * (BODY - 1)


def start(graced, tmp):
    p = subprocess.Popen(
        [graced, "serve", "--listen", "127.0.0.1:0",
         "--admin-listen", "127.0.0.1:0", "--workers", "1",
         "--access-log", "off", "--spool", os.path.join(tmp, "spool"),
         "--max-header-size", str(HEADER), "--max-body", str(BODY),
         "--max-connections", str(CONNS + 10),
         "--request-timeout", "600", "--idle-timeout", "600"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE)
    for raw in p.stderr:
        ev = json.loads(raw)
        if ev.get("event") == "serving":
            return p, int(ev["listen"].rsplit(":", 1)[1])
    raise RuntimeError("graced did not start")


def settle(pid, bound=30.0):
    """RSS once it stops growing (graced has read what was sent)."""
    last, deadline = rss(pid), time.monotonic() + bound
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = rss(pid)
        if now - last < 64 * KiB:
            return now
        last = now
    return last


def main():
    graced = os.environ.get("GRACED_BIN") or "./src/graced"
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, CONNS + 64)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), hard))
    n = min(CONNS, want - 64)
    req = worst_request()
    socks = []
    with tempfile.TemporaryDirectory(prefix="graced-bench-mem-") as tmp:
        proc, port = start(graced, tmp)
        try:
            for _ in range(20):
                s = socket.create_connection(("127.0.0.1", port))
                s.sendall(b"GET /livez HTTP/1.1\r\nHost: x\r\n"
                          b"Connection: close\r\n\r\n")
                s.recv(4096)
                s.close()
            base = settle(proc.pid, 5)
            t0 = time.monotonic()
            for _ in range(n):
                s = socket.create_connection(("127.0.0.1", port),
                                             timeout=30)
                s.sendall(req)
                socks.append(s)
            total = settle(proc.pid)
            secs = time.monotonic() - t0
            per = (total - base) / n
            limit = HEADER + BODY
            print("memory at the limits: --max-header-size %d, --max-body "
                  "%d, %d connections (%.1f s)" % (HEADER, BODY, n, secs))
            print("  graced RSS: %.1f MiB idle, %.1f MiB loaded, "
                  "%.1f MiB more" % (base / KiB / KiB, total / KiB / KiB,
                                     (total - base) / KiB / KiB))
            print("  per connection: %.0f KiB measured; the input cap "
                  "(header + body) is %.0f KiB" % (per / KiB, limit / KiB))
            print("  at --max-connections 10000: about %.1f GiB" %
                  (per * 10000 / KiB / KiB / KiB))
            if proc.poll() is not None:
                print("graced exited during the run")
                return 1
        finally:
            for s in socks:
                s.close()
            # The generation first: left alone, it would drain on its
            # own after the supervisor's death and outlive this script.
            for pid in children(proc.pid) if proc.poll() is None else []:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            proc.kill()
            proc.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
