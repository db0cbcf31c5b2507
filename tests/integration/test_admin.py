"""The admin listener against forged and unauthenticated requests
(DESIGN.md, "Hostile clients and faults"): any Origin header or a body type
other than none or application/json gets 403 and starts no drain;
--admin-token-file makes every admin request carry a bearer token (401
with WWW-Authenticate otherwise); `graced drain --token-file` sends it; a
bad token file fails the start; a non-loopback admin listener without a
token logs admin_unprotected.
"""
import json
import os
import subprocess
import tempfile

from harness import GRACED, Graced, run

HOST = "127.0.0.1"
TOKEN = "s3cr3t-Token_0123456789"


# ---------------------------------------------------------------- helpers

def graced(*args, env=None, timeout=10):
    """Runs the binary to completion, without the caller's GRACED_*."""
    full = {k: v for k, v in os.environ.items() if not k.startswith("GRACED_")}
    full.update(env or {})
    return subprocess.run([GRACED] + list(args), stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          env=full, timeout=timeout)


def token_file(tmp, content):
    path = os.path.join(tmp, "token")
    with open(path, "w") as f:
        f.write(content)
    return path


def assert_serving(g):
    """Nothing drained: /healthz on the public listener says serving."""
    status, body = g.json("GET", "/healthz")
    assert status == 200 and body["state"] == "serving", (status, body)
    assert not g.events("drain_begin"), g.log_text()


def assert_refused(g, status, hdrs, data, code, reason):
    body = json.loads(data)
    assert status == code, (status, data)
    assert body["status"] == code and body["error"], body
    assert hdrs["content-type"] == "application/json", hdrs
    line = g.wait_event("admin_refused",
                        pred=lambda l: l.get("reason") == reason)
    assert line["status"] == code, line


def drain_and_exit(g, headers=None, body=None):
    status, _, data = g.request("POST", "/admin/drain", body=body,
                                headers=headers, admin=True)
    assert status == 202, (status, data)
    assert json.loads(data)["state"] == "draining", data
    assert g.wait_event("drain_begin")["cause"] == "admin"
    assert g.wait_exit() == 0, g.log_text()


# ---------------------------------------------------------------- forgery

def test_form_posts_refused():
    g = Graced("--drain-delay", "0.1")
    try:
        for ctype, body in (
                ("application/x-www-form-urlencoded", b"a=1"),
                ("text/plain", b"x"),
                ("multipart/form-data; boundary=b",
                 b"--b\r\nContent-Disposition: form-data; name=a\r\n\r\n1"
                 b"\r\n--b--\r\n"),
                ("application/jsonp", b"{}"),
                ("text/plain", None)):
            status, hdrs, data = g.request(
                "POST", "/admin/drain", body=body,
                headers={"Content-Type": ctype}, admin=True)
            assert_refused(g, status, hdrs, data, 403, "content_type")
            assert_serving(g)
        drain_and_exit(g)
    finally:
        g.close()


def test_origin_refused():
    g = Graced("--drain-delay", "0.1")
    try:
        for method, path in (("POST", "/admin/drain"),
                             ("POST", "/admin/drain?wait=1"),
                             ("GET", "/metrics"), ("GET", "/healthz")):
            for origin in ("http://evil.example", "null",
                           "http://127.0.0.1:%d" % g.admin_port):
                status, hdrs, data = g.request(
                    method, path, headers={"Origin": origin}, admin=True)
                assert_refused(g, status, hdrs, data, 403, "origin")
        # JSON is no excuse for an Origin either.
        status, hdrs, data = g.request(
            "POST", "/admin/drain", body=b"{}",
            headers={"Origin": "http://evil.example",
                     "Content-Type": "application/json"}, admin=True)
        assert_refused(g, status, hdrs, data, 403, "origin")
        assert_serving(g)
        # The public listener is not the admin one: no rule there.
        status, _, _ = g.request("GET", "/healthz",
                                 headers={"Origin": "http://a.example"})
        assert status == 200
    finally:
        g.close()


def test_drain_without_body_still_works():
    g = Graced("--drain-delay", "0.1")
    try:
        assert g.request("GET", "/metrics", admin=True)[0] == 200
        drain_and_exit(g)
    finally:
        g.close()


def test_drain_with_json_still_works():
    for ctype in ("application/json", "Application/JSON; charset=utf-8"):
        g = Graced("--drain-delay", "0.1")
        try:
            drain_and_exit(g, headers={"Content-Type": ctype}, body=b"{}")
        finally:
            g.close()


def test_admin_routes_answer_like_the_public_ones():
    """The admin listener's routes go through the router, as the public
    ones do: a known path with another method is 405 with Allow (it was 404
    for every path but /admin/drain), an unknown path 404, HEAD works where
    GET does; nothing of it starts a drain."""
    g = Graced()
    try:
        for path in ("/livez", "/healthz", "/metrics"):
            status, hdrs, data = g.request("POST", path, admin=True)
            assert status == 405, (path, status, data)
            assert hdrs.get("allow") == "GET, HEAD", (path, hdrs)
            assert json.loads(data) == {"error": "method not allowed",
                                        "status": 405}, data
        status, hdrs, data = g.request("GET", "/admin/drain", admin=True)
        assert status == 405 and hdrs.get("allow") == "POST", (status, hdrs)
        status, _, data = g.request("GET", "/nope", admin=True)
        assert status == 404 and json.loads(data)["error"] == "not found"
        status, hdrs, data = g.request("HEAD", "/livez", admin=True)
        assert status == 200 and data == b"", (status, data)
        assert int(hdrs["content-length"]) > 0, hdrs
        assert "x-request-id" in hdrs, hdrs
        assert_serving(g)
    finally:
        g.close()


# ---------------------------------------------------------------- token

def test_token_required():
    with tempfile.TemporaryDirectory(prefix="graced-admin-") as tmp:
        # The trailing newline an editor leaves is not part of the token.
        g = Graced("--drain-delay", "0.1", "--admin-token-file",
                   token_file(tmp, TOKEN + "\n"))
        try:
            for auth, reason in ((None, "no_token"),
                                 ("Bearer wrong", "wrong_token"),
                                 ("Bearer " + TOKEN[:-1], "wrong_token"),
                                 ("Bearer " + TOKEN + "x", "wrong_token"),
                                 ("Basic " + TOKEN, "wrong_token"),
                                 (TOKEN, "wrong_token"),
                                 ("Bearer ", "wrong_token")):
                for method, path in (("POST", "/admin/drain"),
                                     ("GET", "/healthz")):
                    hdrs = {"Authorization": auth} if auth else {}
                    status, rh, data = g.request(method, path,
                                                 headers=hdrs, admin=True)
                    assert_refused(g, status, rh, data, 401, reason)
                    assert rh.get("www-authenticate") == "Bearer", rh
            assert_serving(g)
            assert TOKEN not in "\n".join(
                json.dumps(l) for l in g.events("admin_refused"))
            # The token does not lift the browser rule.
            status, rh, data = g.request(
                "POST", "/admin/drain", admin=True,
                headers={"Authorization": "Bearer " + TOKEN,
                         "Origin": "http://evil.example"})
            assert_refused(g, status, rh, data, 403, "origin")
            status, _, _ = g.request(
                "GET", "/metrics", admin=True,
                headers={"Authorization": "bearer " + TOKEN})
            assert status == 200
            # The public listener takes no token.
            assert g.request("GET", "/healthz")[0] == 200
            drain_and_exit(g, headers={"Authorization": "Bearer " + TOKEN})
        finally:
            g.close()


def test_drain_subcommand_token_file():
    with tempfile.TemporaryDirectory(prefix="graced-admin-") as tmp:
        path = token_file(tmp, TOKEN + "\r\n")
        g = Graced("--drain-delay", "0.1", "--shutdown-timeout", "10",
                   env={"GRACED_ADMIN_TOKEN_FILE": path})
        admin = "%s:%d" % (HOST, g.admin_port)
        try:
            p = graced("drain", "--admin", admin)
            assert p.returncode == 1, (p.returncode, p.stderr)
            assert b"401" in p.stderr, p.stderr
            wrong = os.path.join(tmp, "wrong")
            with open(wrong, "w") as f:
                f.write("not-it\n")
            p = graced("drain", "--admin", admin, "--token-file", wrong)
            assert p.returncode == 1, (p.returncode, p.stderr)
            p = graced("drain", "--admin", admin, "--token-file",
                       os.path.join(tmp, "missing"))
            assert p.returncode == 1, (p.returncode, p.stderr)
            assert b"--token-file" in p.stderr, p.stderr
            assert_serving(g)
            p = graced("drain", "--admin", admin, "--token-file", path,
                       "--wait")
            assert p.returncode == 0, (p.returncode, p.stderr)
            assert g.wait_event("drain_begin")["cause"] == "admin"
            assert g.wait_exit() == 0, g.log_text()
        finally:
            g.close()
        # The variable serves the client as it serves the server.
        g = Graced("--drain-delay", "0.1", "--admin-token-file", path)
        try:
            p = graced("drain", "--admin", "%s:%d" % (HOST, g.admin_port),
                       env={"GRACED_ADMIN_TOKEN_FILE": path})
            assert p.returncode == 0, (p.returncode, p.stderr)
            assert g.wait_exit() == 0, g.log_text()
        finally:
            g.close()


def test_bad_token_file_exit_1():
    with tempfile.TemporaryDirectory(prefix="graced-admin-") as tmp:
        for name, content in (("missing", None), ("empty", ""),
                              ("newline", "\n"), ("spaced", "a b\n"),
                              ("long", "x" * 5000)):
            path = os.path.join(tmp, name)
            if content is not None:
                with open(path, "w") as f:
                    f.write(content)
            p = graced("serve", "--listen", "127.0.0.1:0", "--admin-listen",
                       "127.0.0.1:0", "--workers", "1", "--spool",
                       os.path.join(tmp, "events.jsonl"),
                       "--admin-token-file", path)
            lines = [json.loads(l) for l in p.stderr.decode().splitlines()]
            assert p.returncode == 1, (name, p.returncode, lines)
            assert [l["event"] for l in lines] == ["start_failed"], lines
            assert path in lines[0]["error"], lines
            assert "admin-token-file" in lines[0]["cause"], lines


def test_unprotected_admin_warns():
    with tempfile.TemporaryDirectory(prefix="graced-admin-") as tmp:
        path = token_file(tmp, TOKEN)
        for args, warned in ((["--admin-listen", "0.0.0.0:0"], True),
                             (["--admin-listen", "0.0.0.0:0",
                               "--admin-token-file", path], False),
                             ([], False)):
            g = Graced("--drain-delay", "0.1", *args)
            try:
                got = g.events("admin_unprotected")
                assert bool(got) == warned, (args, g.log_text())
                headers = {"Authorization": "Bearer " + TOKEN}
                drain_and_exit(g, headers=headers)
            finally:
                g.close()


def test_help_names_token_flags():
    p = graced("--help")
    assert p.returncode == 0
    for word in (b"--admin-token-file", b"GRACED_ADMIN_TOKEN_FILE"):
        assert word in p.stdout, word
    p = graced("drain", "--help")
    assert p.returncode == 0, p.stderr
    assert b"--token-file" in p.stdout and b"GRACED_ADMIN_TOKEN_FILE" in \
        p.stdout, p.stdout


if __name__ == "__main__":
    run([test_form_posts_refused, test_origin_refused,
         test_drain_without_body_still_works, test_drain_with_json_still_works,
         test_admin_routes_answer_like_the_public_ones,
         test_token_required, test_drain_subcommand_token_file,
         test_bad_token_file_exit_1, test_unprotected_admin_warns,
         test_help_names_token_flags])
