"""The Kubernetes manifests in deploy/k8s/, checked against each other and
against the real daemon (docs/kubernetes.md): probe paths and ports, the
timing relations between drain delay, shutdown timeout, preStop bound and
grace period, the preStop command, the security context, the spool volume,
selectors and ports, and graced started with exactly the manifest's
environment.

Needs python3's yaml module (Debian: python3-yaml); without it every case
is skipped and the file exits 77.
"""
import json
import math
import os
import re
import signal
import socket
import subprocess
import tempfile
import threading
import time

import harness
from harness import GRACED, Graced, SkipTest, run

try:
    import yaml
except ImportError:  # Debian: apt-get install python3-yaml
    yaml = None

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(
    __file__)), "..", ".."))
K8S = os.path.join(ROOT, "deploy", "k8s")
DOCKERFILE = os.path.join(ROOT, "docker", "Dockerfile")

# What docs/kubernetes.md budgets for, in seconds.
PROPAGATION_LAG = 5.0   # endpoint removal reaching kube-proxy, ingresses, LBs
GRACE_MARGIN = 5.0      # grace period beyond drain delay + shutdown timeout
PRESTOP_MARGIN = 2.0    # preStop bound beyond the drain delay
HANDLER_MARGIN = 1.0    # shutdown timeout beyond the longest request

# The settings the Deployment must set explicitly.
REQUIRED_ENV = ("GRACED_LISTEN", "GRACED_ADMIN_LISTEN", "GRACED_DRAIN_DELAY",
                "GRACED_SHUTDOWN_TIMEOUT", "GRACED_SPOOL", "GRACED_WORKERS")
# graced's defaults, for settings a manifest may leave out.
DEFAULTS = {"GRACED_FIRST_BYTE_GRACE": "2", "GRACED_REQUEST_TIMEOUT": "30"}


# ------------------------------------------------------------ the manifests

def _docs(name):
    if yaml is None:
        raise SkipTest("python3 yaml module missing "
                       "(apt-get install python3-yaml)")
    path = os.path.join(K8S, name)
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def _one(name, kind):
    docs = [d for d in _docs(name) if d.get("kind") == kind]
    assert len(docs) == 1, "%s: %d %s documents" % (name, len(docs), kind)
    return docs[0]


def deployment():
    return _one("deployment.yaml", "Deployment")


def service():
    return _one("service.yaml", "Service")


def pdb():
    return _one("pdb.yaml", "PodDisruptionBudget")


def pod_spec(dep=None):
    return (dep or deployment())["spec"]["template"]["spec"]


def container(dep=None):
    cs = pod_spec(dep)["containers"]
    named = [c for c in cs if c.get("name") == "graced"] or cs
    assert len(named) == 1, "which container is graced? %r" % cs
    return named[0]


def env_of(c=None):
    """The container's GRACED_* variables as a dict of the values exactly as
    written (the API server wants strings, so they are checked to be)."""
    c = c or container()
    out = {}
    for e in c.get("env", []):
        assert "valueFrom" not in e, "%s: set it explicitly" % e["name"]
        if e["name"].startswith("GRACED_"):
            out[e["name"]] = e.get("value")
    return out


def seconds(env, name):
    return float(env.get(name, DEFAULTS.get(name)))


def split_addr(value):
    host, port = value.rsplit(":", 1)
    return host.strip("[]"), int(port)


def container_port(c, port):
    """A probe's or Service's port (number or name) as a number."""
    if isinstance(port, int):
        return port
    if str(port).isdigit():
        return int(port)
    for p in c.get("ports", []):
        if p.get("name") == port:
            return int(p["containerPort"])
    raise AssertionError("no container port named %r" % port)


def prestop_command(c=None):
    c = c or container()
    return c["lifecycle"]["preStop"]["exec"]["command"]


def option(argv, flag):
    """The value after flag in argv, or None."""
    for i, a in enumerate(argv):
        if a == flag and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith(flag + "="):
            return a.split("=", 1)[1]
    return None


def figures(dep=None):
    """The manifest's timing figures, in seconds."""
    dep = dep or deployment()
    c = container(dep)
    env = env_of(c)
    rp = c["readinessProbe"]
    return {
        "drain_delay": seconds(env, "GRACED_DRAIN_DELAY"),
        "shutdown_timeout": seconds(env, "GRACED_SHUTDOWN_TIMEOUT"),
        "first_byte_grace": seconds(env, "GRACED_FIRST_BYTE_GRACE"),
        "request_timeout": seconds(env, "GRACED_REQUEST_TIMEOUT"),
        "prestop_timeout": float(option(prestop_command(c), "--timeout")),
        "grace": float(pod_spec(dep).get("terminationGracePeriodSeconds",
                                         30)),
        "readiness_period": float(rp.get("periodSeconds", 10)),
        "readiness_failures": int(rp.get("failureThreshold", 3)),
        "readiness_timeout": float(rp.get("timeoutSeconds", 1)),
    }


def quantity(q):
    """A Kubernetes quantity ("500m", "2", "64Mi", "1G") as a number."""
    m = re.fullmatch(r"([0-9.]+)([a-zA-Z]*)", str(q))
    assert m, "bad quantity %r" % q
    n, unit = float(m.group(1)), m.group(2)
    units = {"": 1, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
             "Ki": 2 ** 10, "Mi": 2 ** 20, "Gi": 2 ** 30, "Ti": 2 ** 40}
    assert unit in units, "bad quantity unit %r" % q
    return n * units[unit]


def free_port_refusing():
    """A 127.0.0.1 port bound but not listening (so connects are refused
    and no one else can take it while the socket is open)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    return s, s.getsockname()[1]


class ManifestPod(Graced):
    """graced started as the Deployment's container is: the container's args
    after the binary, the container's env and nothing else of ours, except
    the listeners on 127.0.0.1:0 and the spool in a temporary directory
    (the same log following as harness.Graced)."""

    def __init__(self, env, args=None, overrides=None):
        self.tmp = tempfile.TemporaryDirectory(prefix="graced-k8s-")
        self.spool = os.path.join(self.tmp.name, "events.jsonl")
        full_env = {k: v for k, v in os.environ.items()
                    if not k.startswith("GRACED_")}
        full_env.update(env)
        full_env.update({"GRACED_LISTEN": "127.0.0.1:0",
                         "GRACED_ADMIN_LISTEN": "127.0.0.1:0",
                         "GRACED_SPOOL": self.spool})
        full_env.update(overrides or {})
        self.lines = []
        self.cond = threading.Condition()
        self.exited_at = None
        self.proc = subprocess.Popen(
            [GRACED] + list(args if args is not None else ["serve"]),
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, env=full_env)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        try:
            ev = self.wait_event("serving")
        except BaseException:
            self.close()
            raise
        self.serving = ev
        self.port = int(ev["listen"].rsplit(":", 1)[1])
        self.admin_port = int(ev["admin"].rsplit(":", 1)[1])


# ------------------------------------------------------------------ cases

def test_documents_parse():
    """Each file holds exactly the one object it is named for."""
    for name, kind, api in (("deployment.yaml", "Deployment", "apps/v1"),
                            ("service.yaml", "Service", "v1"),
                            ("pdb.yaml", "PodDisruptionBudget",
                             "policy/v1")):
        docs = _docs(name)
        assert len(docs) == 1, "%s: %d documents" % (name, len(docs))
        assert docs[0]["kind"] == kind, (name, docs[0].get("kind"))
        assert docs[0]["apiVersion"] == api, (name, docs[0]["apiVersion"])
        assert docs[0]["metadata"]["name"], name
    c = container()
    assert c["image"] == "graced:latest", c["image"]


def test_rollout_never_unavailable():
    """3 replicas, RollingUpdate with maxUnavailable 0 and maxSurge 1."""
    spec = deployment()["spec"]
    assert spec["replicas"] == 3, spec["replicas"]
    st = spec["strategy"]
    assert st["type"] == "RollingUpdate", st
    assert str(st["rollingUpdate"]["maxUnavailable"]) in ("0", "0%"), st
    assert str(st["rollingUpdate"]["maxSurge"]) == "1", st


def test_selectors_match_pod_labels():
    """The Deployment's, the Service's and the PDB's selectors all select
    the pod template's labels; the PDB lets exactly one pod go at a time."""
    dep = deployment()
    labels = dep["spec"]["template"]["metadata"]["labels"]

    def selects(sel, what):
        assert sel, "%s: empty selector" % what
        for k, v in sel.items():
            assert labels.get(k) == v, \
                "%s selects %s=%s, pod labels %r" % (what, k, v, labels)

    sel = dep["spec"]["selector"]
    assert set(sel) == {"matchLabels"}, sel
    selects(sel["matchLabels"], "Deployment")
    selects(service()["spec"]["selector"], "Service")
    p = pdb()["spec"]
    assert set(p["selector"]) == {"matchLabels"}, p["selector"]
    selects(p["selector"]["matchLabels"], "PodDisruptionBudget")
    replicas = dep["spec"]["replicas"]
    if "minAvailable" in p:
        assert "maxUnavailable" not in p, p
        assert p["minAvailable"] == replicas - 1, p
    else:
        assert p["maxUnavailable"] == 1, p


def test_service_targets_container_port():
    """ClusterIP port 80 -> the container port graced listens on."""
    svc = service()["spec"]
    c = container()
    assert svc.get("type", "ClusterIP") == "ClusterIP", svc
    ports = svc["ports"]
    assert len(ports) == 1, ports
    assert ports[0]["port"] == 80, ports
    assert ports[0].get("protocol", "TCP") == "TCP", ports
    target = container_port(c, ports[0]["targetPort"])
    _, listen_port = split_addr(env_of(c)["GRACED_LISTEN"])
    assert target == listen_port == 8080, (target, listen_port)
    declared = [p["containerPort"] for p in c["ports"]]
    assert target in declared, (target, declared)


def test_env_explicit():
    """Every GRACED_* setting that matters is set, as a string; the service
    listener is reachable from the kubelet and the Service, the admin
    listener only from inside the container."""
    c = container()
    env = env_of(c)
    for name in REQUIRED_ENV:
        assert name in env, "%s not set; env: %r" % (name, env)
    for name, value in env.items():
        assert isinstance(value, str), \
            "%s: %r is not a string (the API server refuses it)" % (
                name, value)
    host, port = split_addr(env["GRACED_LISTEN"])
    assert host in ("0.0.0.0", "::"), "listen %s: kubelet can't reach it" % (
        env["GRACED_LISTEN"])
    ahost, aport = split_addr(env["GRACED_ADMIN_LISTEN"])
    assert ahost in ("127.0.0.1", "::1", "localhost"), \
        "admin listener %s is not loopback" % env["GRACED_ADMIN_LISTEN"]
    assert aport != port, (aport, port)
    assert aport not in [p["containerPort"] for p in c.get("ports", [])], \
        "the loopback admin port should not be declared"
    assert int(env["GRACED_WORKERS"]) >= 1, env["GRACED_WORKERS"]


def test_probes_match_listener():
    """Readiness: GET /healthz on the GRACED_LISTEN port, every 1-2 s,
    unready after one failure. Liveness: GET /livez on the same port."""
    c = container()
    _, port = split_addr(env_of(c)["GRACED_LISTEN"])
    rp, lp = c["readinessProbe"], c["livenessProbe"]
    for name, probe, path in (("readiness", rp, "/healthz"),
                              ("liveness", lp, "/livez")):
        get = probe.get("httpGet")
        assert get, "%s probe is not httpGet: %r" % (name, probe)
        assert get["path"] == path, (name, get)
        assert container_port(c, get["port"]) == port, (name, get, port)
        assert get.get("scheme", "HTTP") == "HTTP", (name, get)
        assert "host" not in get, (name, get)
    assert 1 <= rp.get("periodSeconds", 10) <= 2, rp
    assert rp.get("failureThreshold", 3) == 1, rp
    assert rp.get("successThreshold", 1) == 1, rp
    assert rp.get("timeoutSeconds", 1) <= rp["periodSeconds"], rp
    # Liveness must not restart a pod that is just slow for a moment.
    assert lp.get("periodSeconds", 10) * lp.get("failureThreshold", 3) >= \
        10, lp


def test_probe_endpoints_answer():
    """The probe paths of the manifest, asked of a running graced: readiness
    200 while serving and 503 while draining, liveness 200 in both."""
    c = container()
    env = env_of(c)
    ready = c["readinessProbe"]["httpGet"]["path"]
    live = c["livenessProbe"]["httpGet"]["path"]
    g = ManifestPod(env, c.get("args"))
    try:
        for method in ("GET", "HEAD"):  # the kubelet uses GET
            status, _, _ = g.request(method, ready)
            assert status == 200, (method, ready, status)
            status, _, _ = g.request(method, live)
            assert status == 200, (method, live, status)
        g.signal(signal.SIGTERM)
        g.wait_event("drain_begin")
        status, _, body = g.request("GET", ready)
        assert status == 503, (ready, status, body)
        assert json.loads(body)["status"] == "draining", body
        status, _, body = g.request("GET", live)
        assert status == 200, (live, status, body)
        g.signal(signal.SIGTERM)
        assert g.wait_exit() == 0, g.log_text()
    finally:
        g.close()


def test_drain_delay_covers_readiness_and_propagation():
    """drain delay >= readiness period x failureThreshold + probe timeout
    + the endpoint propagation lag budgeted in docs/kubernetes.md."""
    f = figures()
    need = (f["readiness_period"] * f["readiness_failures"] +
            f["readiness_timeout"] + PROPAGATION_LAG)
    assert f["drain_delay"] >= need, \
        "drain delay %g < %g" % (f["drain_delay"], need)


def test_shutdown_timeout_after_drain_delay():
    """graced refuses a shutdown timeout not longer than the drain delay;
    it must also leave room, after the listener closes, for the longest
    request: first-byte grace + request timeout + handler margin."""
    f = figures()
    assert f["shutdown_timeout"] > f["drain_delay"], f
    longest = f["first_byte_grace"] + f["request_timeout"] + HANDLER_MARGIN
    assert f["shutdown_timeout"] >= f["drain_delay"] + longest, \
        "shutdown timeout %g < drain delay %g + longest request %g" % (
            f["shutdown_timeout"], f["drain_delay"], longest)


def test_grace_period_covers_drain():
    """terminationGracePeriodSeconds > drain delay + shutdown timeout +
    margin (conservative: graced's timeout counts from the drain's start),
    and covers the preStop bound plus what remains after it, even when the
    hook drained nothing."""
    f = figures()
    assert f["grace"] == int(f["grace"]), f["grace"]
    assert f["grace"] > (f["drain_delay"] + f["shutdown_timeout"] +
                         GRACE_MARGIN), f
    assert f["grace"] > f["prestop_timeout"] + (
        f["shutdown_timeout"] - f["drain_delay"]) + GRACE_MARGIN, f
    # Worst case: the hook hangs to its bound without starting a drain (a
    # wedged admin listener); the SIGTERM that follows starts one, which
    # may take the whole shutdown timeout.
    assert f["grace"] >= f["prestop_timeout"] + f["shutdown_timeout"] + \
        GRACE_MARGIN, f


def test_prestop_is_drain_wait():
    """preStop execs `graced drain --wait --timeout N`, N beyond the drain
    delay and within the grace period, against the container's own admin
    listener."""
    c = container()
    cmd = prestop_command(c)
    assert cmd[:3] == ["graced", "drain", "--wait"], cmd
    assert all(isinstance(a, str) for a in cmd), cmd
    timeout = option(cmd, "--timeout")
    assert timeout is not None, "no --timeout bound: %r" % cmd
    f = figures()
    assert f["drain_delay"] + PRESTOP_MARGIN <= f["prestop_timeout"] < \
        f["grace"], f
    allowed = {"--wait", "--timeout", timeout, "--admin", option(cmd,
                                                                 "--admin")}
    assert set(cmd[2:]) <= allowed, cmd
    # The address the hook drains: --admin, else $GRACED_ADMIN_LISTEN (the
    # container's env is the hook's env), else graced's default.
    env = env_of(c)
    admin = option(cmd, "--admin") or env.get("GRACED_ADMIN_LISTEN") or \
        "127.0.0.1:8081"
    assert split_addr(admin) == split_addr(env["GRACED_ADMIN_LISTEN"]), \
        (admin, env["GRACED_ADMIN_LISTEN"])


def test_prestop_binary_accepts_command():
    """The binary answers `graced drain` with a bad flag by its usage and
    exit 2, and takes the preStop's own arguments: against an address that
    refuses (the instance is gone) it exits 0 at once."""
    cmd = prestop_command()
    assert os.access(GRACED, os.X_OK), "no executable %s" % GRACED
    p = subprocess.run([GRACED, "drain", "--no-such-flag"],
                       stdin=subprocess.DEVNULL, capture_output=True,
                       timeout=harness.TIMEOUT)
    assert p.returncode == 2, (p.returncode, p.stderr)
    assert b"usage: graced drain" in p.stderr, p.stderr
    for flag in ("--wait", "--timeout"):
        assert flag.encode() in p.stderr, (flag, p.stderr)
    sock, port = free_port_refusing()
    try:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("GRACED_")}
        env.update(env_of())
        env["GRACED_ADMIN_LISTEN"] = "127.0.0.1:%d" % port
        argv = list(cmd[1:])
        if option(argv, "--admin") is not None:
            argv[argv.index("--admin") + 1] = env["GRACED_ADMIN_LISTEN"]
        start = time.monotonic()
        p = subprocess.run([GRACED] + argv, stdin=subprocess.DEVNULL,
                           capture_output=True, env=env,
                           timeout=harness.TIMEOUT)
        took = time.monotonic() - start
    finally:
        sock.close()
    assert p.returncode == 0, (argv, p.returncode, p.stdout, p.stderr)
    assert b"gone" in p.stdout, p.stdout
    assert took < 5, "drain took %.1f s against a refusing address" % took


def _dockerfile_instructions(text):
    """(INSTRUCTION, arguments) pairs, continuation lines joined."""
    out, cur = [], ""
    for line in text.splitlines():
        s = line.strip()
        if not cur and (not s or s.startswith("#")):
            continue
        if s.endswith("\\"):
            cur += s[:-1] + " "
            continue
        cur += s
        word, _, rest = cur.strip().partition(" ")
        out.append((word.upper(), rest.strip()))
        cur = ""
    return out


def test_dockerfile_puts_graced_on_path():
    """If docker/Dockerfile exists: its final stage puts graced in
    /usr/local/bin, ENTRYPOINT runs graced (resolvable through PATH when
    named bare, which the preStop command relies on too), no shell form,
    and STOPSIGNAL, if set, is one that drains."""
    hook = prestop_command()[0]  # what the kubelet execs in the image
    assert hook in ("graced", "/usr/local/bin/graced"), hook
    if not os.path.exists(DOCKERFILE):
        raise SkipTest("no docker/Dockerfile yet")
    with open(DOCKERFILE) as f:
        ins = _dockerfile_instructions(f.read())
    froms = [i for i, (w, _) in enumerate(ins) if w == "FROM"]
    assert froms, "no FROM"
    final = ins[froms[-1]:]
    installs = []
    for w, a in final:
        if w in ("COPY", "ADD"):
            if a.startswith("["):
                args = json.loads(a)
            else:
                args = [t for t in a.split() if not t.startswith("--")]
            dest = args[-1].rstrip("/")
            if dest == "/usr/local/bin/graced" or (
                    dest == "/usr/local/bin" and
                    any(src.rstrip("/").endswith("graced")
                        for src in args[:-1])):
                installs.append(a)
        elif w == "RUN":
            # install/cp/mv of graced into /usr/local/bin, or make install
            # with the default prefix (/usr/local).
            if re.search(r"\b(install|cp|mv)\b[^&;|]*graced[^&;|]*\s"
                         r"/usr/local/bin(/graced)?/?(\s|$|&|;)", a) or \
                    (re.search(r"\bmake\b[^&;|]*\binstall\b", a) and
                     "prefix" not in a):
                installs.append(a)
    assert installs, "final stage does not put graced in /usr/local/bin"
    entry = [a for w, a in final if w == "ENTRYPOINT"]
    assert entry, "no ENTRYPOINT in the final stage"
    try:  # exec form: PID 1 is graced itself, not a shell
        argv = json.loads(entry[-1])
    except ValueError:
        raise AssertionError("ENTRYPOINT not in exec form: %s" % entry[-1])
    assert isinstance(argv, list) and argv, entry[-1]
    assert argv[0] in ("graced", "/usr/local/bin/graced"), argv
    paths = [m.group(1) for w, a in final if w == "ENV"
             for m in [re.search(r"(?:^|\s)PATH[= ]\"?([^\s\"]+)", a)] if m]
    if paths:  # else the base image's PATH, which has /usr/local/bin
        assert "/usr/local/bin" in paths[-1].split(":"), paths[-1]
    stops = [a for w, a in final if w == "STOPSIGNAL"]
    if stops:
        assert stops[-1].upper() in ("SIGTERM", "TERM", "15", "SIGINT",
                                     "INT", "2"), stops[-1]


def test_security_context():
    """runAsNonRoot (with a numeric non-zero user), a read-only root
    filesystem, no privilege escalation, every capability dropped."""
    spec = pod_spec()
    c = container()
    psc, csc = spec.get("securityContext", {}), c.get("securityContext", {})

    def eff(key):
        return csc.get(key, psc.get(key))

    assert eff("runAsNonRoot") is True, (psc, csc)
    user = eff("runAsUser")
    if user is not None:
        assert isinstance(user, int) and user > 0, user
    assert csc.get("readOnlyRootFilesystem") is True, csc
    assert csc.get("allowPrivilegeEscalation") is False, csc
    assert csc.get("privileged", False) is False, csc
    caps = csc.get("capabilities", {})
    assert caps.get("drop") == ["ALL"], caps
    assert not caps.get("add"), caps


def test_spool_on_writable_volume():
    """With a read-only root filesystem the spool must be on a mounted,
    writable volume of the pod."""
    spec = pod_spec()
    c = container()
    spool = env_of(c)["GRACED_SPOOL"]
    assert os.path.isabs(spool), spool
    spool_dir = os.path.dirname(os.path.normpath(spool))
    mounts = [m for m in c.get("volumeMounts", [])
              if spool_dir == m["mountPath"].rstrip("/") or
              spool_dir.startswith(m["mountPath"].rstrip("/") + "/")]
    assert mounts, "%s is on no volumeMount: %r" % (
        spool, c.get("volumeMounts"))
    m = max(mounts, key=lambda m: len(m["mountPath"]))
    assert not m.get("readOnly", False), m
    vols = {v["name"]: v for v in spec.get("volumes", [])}
    assert m["name"] in vols, (m, list(vols))
    v = vols[m["name"]]
    assert "emptyDir" in v or "persistentVolumeClaim" in v or \
        "ephemeral" in v, v


def test_resources_and_workers():
    """Requests and limits for cpu and memory, requests within limits, and
    as many event loops as the CPU limit allows (graced's default would be
    the node's CPU count)."""
    c = container()
    res = c["resources"]
    for kind in ("cpu", "memory"):
        req, lim = res["requests"][kind], res["limits"][kind]
        assert 0 < quantity(req) <= quantity(lim), (kind, req, lim)
    workers = int(env_of(c)["GRACED_WORKERS"])
    assert 1 <= workers <= math.ceil(quantity(res["limits"]["cpu"])), \
        (workers, res["limits"]["cpu"])


def test_anti_affinity_spreads_replicas():
    """A preferred podAntiAffinity on the hostname, selecting the pods'
    own labels."""
    dep = deployment()
    labels = dep["spec"]["template"]["metadata"]["labels"]
    aa = pod_spec(dep)["affinity"]["podAntiAffinity"]
    terms = aa["preferredDuringSchedulingIgnoredDuringExecution"]
    assert terms, aa
    t = terms[0]["podAffinityTerm"]
    assert t["topologyKey"] == "kubernetes.io/hostname", t
    for k, v in t["labelSelector"]["matchLabels"].items():
        assert labels.get(k) == v, (k, v, labels)


def test_manifest_env_parses_verbatim():
    """graced parses the manifest's env exactly as written (0.0.0.0:8080
    included, nothing bound: --help exits after parsing); the same env with
    one value broken exits 2, so this check can fail."""
    c = container()
    base = {k: v for k, v in os.environ.items()
            if not k.startswith("GRACED_")}
    env = dict(base, **env_of(c))
    p = subprocess.run([GRACED] + list(c.get("args", [])) + ["--help"],
                       stdin=subprocess.DEVNULL, capture_output=True,
                       env=env, timeout=harness.TIMEOUT)
    assert p.returncode == 0, (p.returncode, p.stderr)
    assert b"usage: graced" in p.stdout, p.stdout
    bad = dict(env, GRACED_DRAIN_DELAY=env["GRACED_DRAIN_DELAY"] + "x")
    p = subprocess.run([GRACED, "serve", "--help"], stdin=subprocess.DEVNULL,
                       capture_output=True, env=bad,
                       timeout=harness.TIMEOUT)
    assert p.returncode == 2, (p.returncode, p.stderr)
    assert b"GRACED_DRAIN_DELAY" in p.stderr, p.stderr


def test_daemon_runs_with_manifest_env():
    """graced started with the container's args and exactly its env (the
    listeners on 127.0.0.1:0, the spool in a temporary directory), plus the
    variables a Service named like ours would inject were service links
    on: it serves with the manifest's workers, spools to GRACED_SPOOL,
    drains with the manifest's delay and exits 0."""
    c = container()
    env = env_of(c)
    svc_env = service()["metadata"]["name"].upper().replace("-", "_")
    links = {svc_env + "_SERVICE_HOST": "10.96.0.10",
             svc_env + "_SERVICE_PORT": "80",
             svc_env + "_SERVICE_PORT_HTTP": "80",
             svc_env + "_PORT": "tcp://10.96.0.10:80",
             svc_env + "_PORT_80_TCP": "tcp://10.96.0.10:80",
             svc_env + "_PORT_80_TCP_PROTO": "tcp",
             svc_env + "_PORT_80_TCP_PORT": "80",
             svc_env + "_PORT_80_TCP_ADDR": "10.96.0.10"}
    g = ManifestPod(env, c.get("args"), overrides=links)
    try:
        assert g.serving["workers"] == int(env["GRACED_WORKERS"]), g.serving
        status, body = g.json("POST", "/v1/events",
                              body=json.dumps({"id": "k8s-env"}))
        assert status == 202 and body == {"accepted": 1}, (status, body)
        status, body = g.json("GET", "/healthz")
        assert status == 200, (status, body)
        delay_ms = float(env["GRACED_DRAIN_DELAY"]) * 1000
        g.signal(signal.SIGTERM)
        g.wait_event("drain_begin")
        status, body = g.json("GET", "/healthz")
        assert status == 503, (status, body)
        # The drain delay in force is the manifest's.
        assert delay_ms - 2000 < body["drain_ms_left"] <= delay_ms, body
        g.signal(signal.SIGTERM)
        assert g.wait_exit() == 0, g.log_text()
        assert [json.loads(l)["id"] for l in g.spool_lines()] == \
            ["k8s-env"], g.spool_lines()
    finally:
        g.close()


TESTS = [
    test_documents_parse,
    test_rollout_never_unavailable,
    test_selectors_match_pod_labels,
    test_service_targets_container_port,
    test_env_explicit,
    test_probes_match_listener,
    test_probe_endpoints_answer,
    test_drain_delay_covers_readiness_and_propagation,
    test_shutdown_timeout_after_drain_delay,
    test_grace_period_covers_drain,
    test_prestop_is_drain_wait,
    test_prestop_binary_accepts_command,
    test_dockerfile_puts_graced_on_path,
    test_security_context,
    test_spool_on_writable_volume,
    test_resources_and_workers,
    test_anti_affinity_spreads_replicas,
    test_manifest_env_parses_verbatim,
    test_daemon_runs_with_manifest_env,
]

if __name__ == "__main__":
    run(TESTS)
