/* Unit tests for src/lib/health.c: the /healthz and /metrics bodies,
 * rendered from a drain with no workers on a loop of the test's own, and
 * the application's hooks. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <cmocka.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "drain.h"
#include "health.h"
#include "router.h"

struct fake {
	struct graced_config *cfg;
	struct event_base *base;
	struct drain *drain;
	struct health *health;
	struct router router;
	int ready; /* what the status hook says */
};

static const char *
status_hook(void *arg, int *ready)
{
	const struct fake *f = arg;

	*ready = f->ready;
	return f->ready ? "fine" : "say \"no\"";
}

static void
metrics_hook(struct evbuffer *out, void *arg)
{
	(void)arg;
	evbuffer_add_printf(out, "app_things_total 42\n");
}

static struct fake *
fake_new(void)
{
	static struct fake f;

	memset(&f, 0, sizeof(f));
	f.cfg = graced_config_new();
	f.base = event_base_new();
	f.drain = drain_new(NULL, f.cfg, f.base);
	f.health = health_new(f.drain);
	assert_non_null(f.health);
	health_set_workers(f.health, NULL, 0, &f.router);
	f.ready = 1;
	return &f;
}

static void
fake_free(struct fake *f)
{
	health_free(f->health);
	drain_free(f->drain);
	event_base_free(f->base);
	graced_config_free(f->cfg);
}

/* The /healthz body into buf; returns its status. */
static int
healthz(struct fake *f, char *buf, size_t len)
{
	struct evbuffer *out = evbuffer_new();
	int status = health_render(f->health, out);
	size_t n = evbuffer_get_length(out);

	assert_true(n < len);
	evbuffer_remove(out, buf, n);
	buf[n] = '\0';
	evbuffer_free(out);
	return status;
}

static int
metrics_has(struct fake *f, const char *want)
{
	struct evbuffer *out = evbuffer_new();
	int found;

	health_render_metrics(f->health, out);
	evbuffer_add(out, "", 1);
	found = strstr((char *)evbuffer_pullup(out, -1), want) != NULL;
	evbuffer_free(out);
	return found;
}

static void
test_healthz_follows_the_state(void **state)
{
	struct fake *f = fake_new();
	char buf[512];

	(void)state;
	assert_int_equal(healthz(f, buf, sizeof(buf)), 503);
	assert_string_equal(buf,
	    "{\"status\":\"starting\",\"state\":\"starting\",\"connections\":0,"
	    "\"in_flight\":0,\"workers\":[]}");
	drain_serving(f->drain, "127.0.0.1:1", "127.0.0.1:2");
	assert_int_equal(healthz(f, buf, sizeof(buf)), 200);
	assert_non_null(strstr(buf, "\"status\":\"ok\",\"state\":\"serving\""));
	assert_null(strstr(buf, "drain_ms_left"));
	assert_true(metrics_has(f, "graced_state{state=\"serving\"} 1"));
	drain_begin(f->drain, "test");
	assert_int_equal(healthz(f, buf, sizeof(buf)), 503);
	assert_non_null(
	    strstr(buf, "\"status\":\"draining\",\"state\":\"draining\""));
	/* The default drain delay is still ahead. */
	assert_non_null(strstr(buf, "\"drain_ms_left\":"));
	assert_null(strstr(buf, "\"drain_ms_left\":0"));
	assert_true(metrics_has(f, "graced_state{state=\"draining\"} 1"));
	assert_true(metrics_has(f, "graced_state{state=\"serving\"} 0"));
	fake_free(f);
}

static void
test_status_hook_makes_unready_and_is_escaped(void **state)
{
	struct fake *f = fake_new();
	char buf[512];

	(void)state;
	assert_int_equal(
	    health_add_status(f->health, "app", status_hook, f), 0);
	drain_serving(f->drain, "127.0.0.1:1", "127.0.0.1:2");
	assert_int_equal(healthz(f, buf, sizeof(buf)), 200);
	assert_non_null(strstr(buf, ",\"app\":\"fine\"}"));
	f->ready = 0;
	assert_int_equal(healthz(f, buf, sizeof(buf)), 503);
	assert_non_null(strstr(buf, "\"status\":\"unready\""));
	assert_non_null(strstr(buf, ",\"app\":\"say \\\"no\\\"\"}"));
	/* Draining wins over unready. */
	drain_begin(f->drain, "test");
	assert_int_equal(healthz(f, buf, sizeof(buf)), 503);
	assert_non_null(strstr(buf, "\"status\":\"draining\""));
	fake_free(f);
}

static void
test_hooks_are_bounded_and_metrics_come_last(void **state)
{
	struct fake *f = fake_new();

	(void)state;
	for (int i = 0; i < HEALTH_MAX_HOOKS; i++)
		assert_int_equal(
		    health_add_metrics(f->health, metrics_hook, NULL), 0);
	assert_int_equal(
	    health_add_metrics(f->health, metrics_hook, NULL), -ENOSPC);
	assert_true(metrics_has(f, "app_things_total 42\n"));
	assert_true(metrics_has(f, "graced_uptime_seconds 0.000\n"));
	fake_free(f);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_healthz_follows_the_state),
		cmocka_unit_test(test_status_hook_makes_unready_and_is_escaped),
		cmocka_unit_test(test_hooks_are_bounded_and_metrics_come_last),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
