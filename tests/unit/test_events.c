/* Unit tests for the events application's JSON validation and spool
 * (src/daemon/events.c). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include <event2/buffer.h>

#include "events.h"
#include "graced.h"
#include "health.h"
#include "server.h"

static json_t *
parse(const char *body, char *err, size_t errlen)
{
	return events_parse(body, strlen(body), err, errlen);
}

static void
test_object_and_array(void **state)
{
	char err[256];
	json_t *list;

	(void)state;
	list = parse("{\"a\":1}", err, sizeof(err));
	assert_non_null(list);
	assert_int_equal(json_array_size(list), 1);
	assert_int_equal(
	    json_integer_value(json_object_get(json_array_get(list, 0), "a")),
	    1);
	json_decref(list);
	list = parse("[{\"a\":1},{},{\"b\":[1,2]}]", err, sizeof(err));
	assert_non_null(list);
	assert_int_equal(json_array_size(list), 3);
	json_decref(list);
}

static void
expect_rejected(const char *body, const char *words)
{
	char err[256] = "";
	json_t *list = parse(body, err, sizeof(err));

	assert_null(list);
	assert_non_null(strstr(err, words));
}

static void
test_rejections(void **state)
{
	(void)state;
	expect_rejected("", "invalid JSON");
	expect_rejected("{\"a\":", "invalid JSON");
	expect_rejected("{\"a\":1} trailing", "invalid JSON");
	expect_rejected("{\"a\":1,\"a\":2}", "invalid JSON");
	expect_rejected("[]", "empty array");
	expect_rejected("[1]", "event 0 is not an object");
	expect_rejected("[{}, \"x\"]", "event 1 is not an object");
	expect_rejected("\"x\"", "expected an object");
	expect_rejected("42", "expected an object");
	expect_rejected("null", "expected an object");
}

static void
test_embedded_nul_is_invalid(void **state)
{
	char err[256];
	static const char body[] = "{\"a\":\"x\0y\"}";

	(void)state;
	assert_null(events_parse(body, sizeof(body) - 1, err, sizeof(err)));
}

static void
test_unwritable_spool_names_path(void **state)
{
	char err[512] = "";

	(void)state;
	assert_null(
	    events_new("/nonexistent-dir/events.jsonl", err, sizeof(err)));
	assert_non_null(strstr(err, "/nonexistent-dir/events.jsonl"));
	assert_non_null(strstr(err, "No such file"));
}

static void
test_spool_opens_and_closes(void **state)
{
	char path[] = "/tmp/graced-test-spool-XXXXXX";
	char err[512];
	int fd = mkstemp(path);
	struct events *ev;
	char rotated[64];

	(void)state;
	assert_true(fd >= 0);
	close(fd);

	ev = events_new(path, err, sizeof(err));
	assert_non_null(ev);
	/* What logrotate does before it asks for a reopen: the reopened
	 * spool is a new file at the path. */
	snprintf(rotated, sizeof(rotated), "%s.1", path);
	assert_int_equal(rename(path, rotated), 0);
	assert_int_equal(access(path, F_OK), -1);
	assert_int_equal(events_reopen(ev), 0);
	assert_int_equal(access(path, F_OK), 0);
	events_free(ev);
	unlink(path);
	unlink(rotated);
}

/* Renders /healthz (or /metrics) of srv; returns the HTTP status and
 * whether the body holds want. */
static int
rendered_has(
    struct graced_server *srv, int metrics, const char *want, int *status)
{
	struct evbuffer *out = evbuffer_new();
	char *text;
	int found;

	if (metrics)
		health_render_metrics(srv->health, out);
	else
		*status = health_render(srv->health, out);
	evbuffer_add(out, "", 1);
	text = (char *)evbuffer_pullup(out, -1);
	found = strstr(text, want) != NULL;
	evbuffer_free(out);
	return found;
}

static const char *
odd_status(void *arg, int *ready)
{
	(void)arg;
	(void)ready;
	return "w\x01\"";
}

/* The status and metrics hooks: a spool whose directory is gone (reopen
 * fails) is "gone" on /healthz, and unready; a reopen that works brings
 * it back. */
static void
test_spool_state_through_hooks(void **state)
{
	static const char *const opts[][2] = { { "listen", "127.0.0.1:0" },
		{ "admin-listen", "127.0.0.1:0" }, { "workers", "1" },
		{ "log-file", "/dev/null" } };
	char dir[] = "/tmp/graced-test-spooldir-XXXXXX", path[64], err[512];
	struct graced_config *cfg = graced_config_new();
	struct graced_server *srv;
	struct events *ev;
	int status = 0;

	(void)state;
	for (size_t i = 0; i < sizeof(opts) / sizeof(opts[0]); i++)
		assert_int_equal(graced_config_set(cfg, opts[i][0], opts[i][1],
		                     err, sizeof(err)),
		    0);
	srv = graced_server_new(cfg);
	assert_non_null(srv);
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/events.jsonl", dir);
	ev = events_new(path, err, sizeof(err));
	assert_non_null(ev);
	assert_int_equal(events_attach(ev, srv), 0);
	/* Names and words are JSON-escaped on /healthz. */
	assert_int_equal(
	    graced_server_add_status(srv, "q\\\n", odd_status, NULL), 0);
	/* Hooks are added before start only. */
	assert_int_equal(graced_server_start(srv), 0);
	assert_int_equal(
	    graced_server_add_status(srv, "x", NULL, NULL), -EBUSY);
	assert_true(rendered_has(srv, 0,
	    ",\"spool\":\"ok\",\"q\\\\\\u000a\":\"w\\u0001\\\"\"}", &status));
	assert_int_equal(status, 200);
	assert_true(rendered_has(
	    srv, 1, "graced_spool_state{state=\"ok\"} 1\n", &status));
	assert_int_equal(unlink(path), 0);
	assert_int_equal(rmdir(dir), 0);
	assert_true(events_reopen(ev) < 0);
	assert_true(rendered_has(srv, 0, "\"spool\":\"gone\"", &status));
	assert_int_equal(status, 503);
	assert_true(rendered_has(
	    srv, 1, "graced_spool_state{state=\"gone\"} 1\n", &status));
	assert_int_equal(mkdir(dir, 0700), 0);
	assert_int_equal(events_reopen(ev), 0);
	assert_true(rendered_has(srv, 0, "\"spool\":\"ok\"", &status));
	assert_int_equal(status, 200);
	graced_server_stop_now(srv, "test over");
	graced_server_run(srv);
	graced_server_free(srv);
	events_free(ev);
	graced_config_free(cfg);
	unlink(path);
	rmdir(dir);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_object_and_array),
		cmocka_unit_test(test_rejections),
		cmocka_unit_test(test_embedded_nul_is_invalid),
		cmocka_unit_test(test_unwritable_spool_names_path),
		cmocka_unit_test(test_spool_opens_and_closes),
		cmocka_unit_test(test_spool_state_through_hooks),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
