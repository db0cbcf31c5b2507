/* Unit tests for src/lib/admin.c, what a unit test sees better than the
 * black-box test_admin.py: the token file's edge cases, the bearer token
 * compare, the browser guard and POST /admin/upgrade's one waiting request,
 * on an admin listener of the test's own (a drain with no workers, on a
 * loop of the test's own). */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "admin.h"
#include "drain.h"
#include "health.h"
#include "listener.h"
#include "loopback.h"

/* The token read from a file holding len bytes of content. */
static int
token_of(const char *content, size_t len, char **token, char *err)
{
	char path[] = "/tmp/graced-test-token-XXXXXX";
	int fd = mkstemp(path), rc;

	assert_true(fd >= 0);
	assert_int_equal(write(fd, content, len), (ssize_t)len);
	close(fd);
	rc = admin_token_read(path, token, err, 256);
	unlink(path);
	return rc;
}

/* content is a string: its length is strlen's. */
static void
token_is(const char *content, const char *want)
{
	char err[256] = "", *token;

	assert_int_equal(token_of(content, strlen(content), &token, err), 0);
	assert_string_equal(token, want);
	assert_string_equal(err, "");
	free(token);
}

static void
token_refused(const char *content, size_t len, const char *why)
{
	char err[256] = "", *token = (char *)"unchanged";

	assert_int_equal(token_of(content, len, &token, err), -EINVAL);
	assert_null(token);
	assert_non_null(strstr(err, "'/tmp/graced-test-token-"));
	assert_non_null(strstr(err, why));
}

static void
test_token_file_edges(void **state)
{
	char big[ADMIN_TOKEN_MAX + 4];

	(void)state;
	token_is("s3cret", "s3cret");
	/* Trailing line ends go, whichever kind and however many. */
	token_is("s3cret\n", "s3cret");
	token_is("s3cret\r\n", "s3cret");
	token_is("s3cret\n\n", "s3cret");
	token_refused("", 0, "empty");
	token_refused("\r\n", 2, "empty");
	token_refused("a b", 3, "space or a control");
	token_refused("a\nb", 3, "space or a control");
	token_refused("a\tb\n", 4, "space or a control");
	token_refused("nul\0x", 5, "space or a control");
	token_refused("caf\xc3\xa9", 5, "space or a control");
	token_refused("del\x7f", 4, "space or a control");
	/* ADMIN_TOKEN_MAX bytes, with or without a line end, and no more. */
	memset(big, 'k', sizeof(big));
	big[ADMIN_TOKEN_MAX] = '\0';
	token_is(big, big);
	big[ADMIN_TOKEN_MAX] = '\r';
	big[ADMIN_TOKEN_MAX + 1] = '\n';
	big[ADMIN_TOKEN_MAX + 2] = '\0';
	{
		char err[256], *token;
		assert_int_equal(
		    token_of(big, ADMIN_TOKEN_MAX + 2, &token, err), 0);
		assert_int_equal(strlen(token), ADMIN_TOKEN_MAX);
		free(token);
	}
	memset(big, 'k', sizeof(big));
	token_refused(big, ADMIN_TOKEN_MAX + 1, "longer than 1024 bytes");
	/* A file that goes on past what is read, even with line ends. */
	big[ADMIN_TOKEN_MAX + 1] = '\n';
	big[ADMIN_TOKEN_MAX + 2] = '\n';
	token_refused(big, sizeof(big), "longer than 1024 bytes");
}

static void
test_token_file_unreadable(void **state)
{
	char err[256], *token = (char *)"unchanged";

	(void)state;
	assert_int_equal(
	    admin_token_read("/nonexistent/t", &token, err, sizeof(err)),
	    -ENOENT);
	assert_null(token);
	assert_non_null(strstr(err, "cannot read '/nonexistent/t'"));
	assert_int_equal(
	    admin_token_read("/tmp", &token, err, sizeof(err)), -EISDIR);
	assert_null(token);
}

struct fake {
	struct graced_config *cfg;
	struct event_base *base;
	struct drain *drain;
	struct health *health;
	struct admin *admin;
	struct sockaddr_in sin;
};

static int upgrade_calls; /* the upgrade hook ran */

static void
upgrade_hook(struct graced_server *srv, void *arg)
{
	(void)srv;
	(void)arg;
	upgrade_calls++;
}

static struct fake *
fake_with(const char *token, graced_upgrade_fn *upgrade)
{
	static struct fake f;
	struct config_addr addr = { "127.0.0.1", "0" };
	socklen_t len = sizeof(f.sin);
	char err[256];
	int fd;

	memset(&f, 0, sizeof(f));
	f.cfg = graced_config_new();
	f.base = event_base_new();
	f.drain = drain_new(NULL, f.cfg, f.base);
	f.health = health_new(f.drain);
	assert_non_null(f.health);
	fd = listener_open(&addr, LISTENER_ALONE, err, sizeof(err));
	assert_true(fd >= 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&f.sin, &len), 0);
	f.admin = admin_new(&(struct admin_env){ f.cfg, f.base, f.drain,
	                        f.health, token, NULL, upgrade, NULL },
	    fd);
	assert_non_null(f.admin);
	drain_serving(f.drain, "-", "-");
	return &f;
}

static struct fake *
fake_new(const char *token)
{
	return fake_with(token, NULL);
}

static void
fake_free(struct fake *f)
{
	admin_free(f->admin);
	health_free(f->health);
	drain_free(f->drain);
	event_base_free(f->base);
	graced_config_free(f->cfg);
}

/* The status of GET /livez with the given extra header lines. */
static int
livez(struct fake *f, const char *headers)
{
	char req[512], buf[1024];
	int fd;
	ssize_t n;

	snprintf(req, sizeof(req), "GET /livez HTTP/1.1\r\nHost: a\r\n%s\r\n",
	    headers);
	fd = lb_client(&f->sin, req);
	assert_true(fd >= 0);
	n = lb_recv(f->base, fd, buf, sizeof(buf) - 1);
	close(fd);
	assert_true(n > 12);
	buf[n] = '\0';
	/* Only a missing or wrong token is asked for one. */
	assert_true((strstr(buf, "WWW-Authenticate: Bearer\r\n") != NULL) ==
	    (strncmp(buf + 9, "401", 3) == 0));
	return atoi(buf + 9);
}

static void
test_bearer_token_must_match_exactly(void **state)
{
	struct fake *f = fake_new("s3cret");

	(void)state;
	assert_int_equal(livez(f, ""), 401);
	assert_int_equal(livez(f, "Authorization: Bearer s3cret\r\n"), 200);
	/* The scheme is case-insensitive, the token is not. */
	assert_int_equal(livez(f, "Authorization: bEARER s3cret\r\n"), 200);
	assert_int_equal(livez(f, "Authorization: Bearer S3cret\r\n"), 401);
	/* A prefix, an extension, the same length but one byte off. */
	assert_int_equal(livez(f, "Authorization: Bearer s3cre\r\n"), 401);
	assert_int_equal(livez(f, "Authorization: Bearer s3cretX\r\n"), 401);
	assert_int_equal(livez(f, "Authorization: Bearer s3creu\r\n"), 401);
	assert_int_equal(livez(f, "Authorization: Bearer \r\n"), 401);
	assert_int_equal(livez(f, "Authorization: Basic s3cret\r\n"), 401);
	assert_int_equal(livez(f, "Authorization: s3cret\r\n"), 401);
	/* The browser guard comes first, token or not. */
	assert_int_equal(livez(f,
	                     "Authorization: Bearer s3cret\r\n"
	                     "Origin: http://evil.example\r\n"),
	    403);
	fake_free(f);
}

static void
test_browser_guard_without_token(void **state)
{
	struct fake *f = fake_new(NULL);

	(void)state;
	assert_int_equal(livez(f, ""), 200);
	assert_int_equal(livez(f, "origin: null\r\n"), 403);
	assert_int_equal(livez(f, "Content-Type: text/plain\r\n"), 403);
	assert_int_equal(livez(f,
	                     "Content-Type: application/x-www-form-urlencoded"
	                     "\r\n"),
	    403);
	/* JSON with parameters, in any case, is what a CLI sends. */
	assert_int_equal(
	    livez(f, "Content-Type: Application/JSON ; charset=utf-8\r\n"),
	    200);
	assert_int_equal(livez(f, "Content-Type: application/jsonx\r\n"), 403);
	fake_free(f);
}

/* Sends POST /admin/upgrade; returns the client socket. */
static int
post_upgrade(struct fake *f)
{
	int fd = lb_client(&f->sin,
	    "POST /admin/upgrade HTTP/1.1\r\nHost: a\r\n"
	    "Content-Length: 0\r\n\r\n");

	assert_true(fd >= 0);
	return fd;
}

/* The status and body of the reply on fd. */
static int
reply_on(struct fake *f, int fd, char *buf, size_t len)
{
	ssize_t n = lb_recv(f->base, fd, buf, len - 1);

	assert_true(n > 12);
	buf[n] = '\0';
	return atoi(buf + 9);
}

static void
test_upgrade_waits_for_its_answer(void **state)
{
	struct fake *f = fake_with(NULL, upgrade_hook);
	char buf[2048];
	int first, second;

	(void)state;
	upgrade_calls = 0;
	first = post_upgrade(f);
	LB_UNTIL(f->base, upgrade_calls == 1);
	assert_int_equal(upgrade_calls, 1);
	/* One at a time: the second is refused at once, without the hook. */
	second = post_upgrade(f);
	assert_int_equal(reply_on(f, second, buf, sizeof(buf)), 409);
	assert_non_null(strstr(buf, "already in progress"));
	assert_int_equal(upgrade_calls, 1);
	close(second);
	/* The first is held until the answer. */
	for (int i = 0; i < 20; i++)
		lb_step(f->base);
	assert_int_equal(recv(first, buf, sizeof(buf), MSG_DONTWAIT), -1);
	admin_upgrade_reply(f->admin, 200,
	    json_pack("{s:s,s:i}", "result", "ok", "generation", 2));
	assert_int_equal(reply_on(f, first, buf, sizeof(buf)), 200);
	assert_non_null(strstr(buf, "\"generation\":2"));
	close(first);
	/* A late answer, with nobody waiting, is dropped. */
	admin_upgrade_reply(f->admin, 200, json_object());
	fake_free(f);
}

static void
test_upgrade_without_hook_or_while_draining(void **state)
{
	struct fake *f = fake_new(NULL), *g;
	char buf[2048];
	int fd;

	(void)state;
	fd = post_upgrade(f);
	assert_int_equal(reply_on(f, fd, buf, sizeof(buf)), 501);
	close(fd);
	fake_free(f);
	g = fake_with(NULL, upgrade_hook);
	upgrade_calls = 0;
	drain_begin(g->drain, "test");
	fd = post_upgrade(g);
	assert_int_equal(reply_on(g, fd, buf, sizeof(buf)), 409);
	assert_non_null(strstr(buf, "stopping"));
	assert_int_equal(upgrade_calls, 0);
	close(fd);
	fake_free(g);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_token_file_edges),
		cmocka_unit_test(test_token_file_unreadable),
		cmocka_unit_test(test_bearer_token_must_match_exactly),
		cmocka_unit_test(test_browser_guard_without_token),
		cmocka_unit_test(test_upgrade_waits_for_its_answer),
		cmocka_unit_test(test_upgrade_without_hook_or_while_draining),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
