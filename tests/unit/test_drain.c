/* Unit tests for the drain state machine (src/lib/drain.c), driven on a real
 * server bound to loopback with no clients. */
#include <dirent.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "graced.h"
#include "drain.h"
#include "health.h"
#include "loopback.h"
#include "server.h"
#include "util.h"
#include "worker.h"

static struct graced_server *
start_workers(const char *delay, const char *workers)
{
	struct graced_config *cfg = graced_config_new();
	struct graced_server *srv;
	char err[256];

	assert_int_equal(
	    graced_config_set(cfg, "listen", "127.0.0.1:0", err, sizeof(err)),
	    0);
	assert_int_equal(graced_config_set(cfg, "admin-listen", "127.0.0.1:0",
	                     err, sizeof(err)),
	    0);
	assert_int_equal(
	    graced_config_set(cfg, "drain-delay", delay, err, sizeof(err)), 0);
	assert_int_equal(
	    graced_config_set(cfg, "workers", workers, err, sizeof(err)), 0);
	assert_int_equal(
	    graced_config_set(cfg, "log-file", "/dev/null", err, sizeof(err)),
	    0);
	srv = graced_server_new(cfg);
	graced_config_free(cfg);
	assert_non_null(srv);
	assert_int_equal(graced_server_state(srv), GRACED_STARTING);
	assert_null(graced_server_address(srv, 0));
	assert_int_equal(graced_server_start(srv), 0);
	assert_int_equal(graced_server_state(srv), GRACED_SERVING);
	assert_non_null(strstr(graced_server_address(srv, 0), "127.0.0.1:"));
	return srv;
}

static struct graced_server *
start(const char *delay)
{
	return start_workers(delay, "1");
}

static void
test_state_names(void **state)
{
	(void)state;
	assert_string_equal(graced_state_name(GRACED_STARTING), "starting");
	assert_string_equal(graced_state_name(GRACED_SERVING), "serving");
	assert_string_equal(graced_state_name(GRACED_DRAINING), "draining");
	assert_string_equal(graced_state_name(GRACED_STOPPING), "stopping");
	assert_string_equal(graced_state_name(GRACED_STOPPED), "stopped");
	assert_string_equal(
	    graced_state_name((enum graced_state)42), "unknown");
}

static void
test_second_signal_skips_delay(void **state)
{
	struct graced_server *srv = start("60");

	(void)state;
	graced_server_drain(srv, "test");
	assert_int_equal(graced_server_state(srv), GRACED_DRAINING);
	assert_true(drain_ms_left(srv->drain) > 59000);
	graced_server_drain(srv, "test");
	assert_int_equal(graced_server_state(srv), GRACED_STOPPING);
	assert_int_equal(drain_ms_left(srv->drain), 0);
	/* The listener closes from the loop, then nothing is left. */
	assert_int_equal(graced_server_run(srv), 0);
	assert_int_equal(graced_server_state(srv), GRACED_STOPPED);
	graced_server_free(srv);
}

static void
test_delay_zero_goes_straight_to_stopping(void **state)
{
	struct graced_server *srv = start("0");

	(void)state;
	graced_server_drain(srv, "test");
	assert_int_equal(graced_server_state(srv), GRACED_STOPPING);
	assert_int_equal(graced_server_run(srv), 0);
	assert_int_equal(graced_server_state(srv), GRACED_STOPPED);
	graced_server_free(srv);
}

static void
test_delay_timer_ends_draining(void **state)
{
	struct graced_server *srv = start("0.05");

	(void)state;
	graced_server_drain(srv, "test");
	assert_int_equal(graced_server_state(srv), GRACED_DRAINING);
	assert_int_equal(graced_server_run(srv), 0);
	assert_int_equal(graced_server_state(srv), GRACED_STOPPED);
	graced_server_free(srv);
}

static void
test_every_worker_closes_before_stopped(void **state)
{
	struct graced_server *srv = start_workers("0", "4");

	(void)state;
	assert_int_equal(srv->nworkers, 4);
	graced_server_drain(srv, "test");
	assert_int_equal(graced_server_state(srv), GRACED_STOPPING);
	assert_int_equal(graced_server_run(srv), 0);
	assert_int_equal(graced_server_state(srv), GRACED_STOPPED);
	for (unsigned i = 0; i < srv->nworkers; i++)
		assert_true(
		    worker_done(srv->workers[i], WORKER_LISTENER_CLOSED));
	graced_server_free(srv);
}

static void
test_default_workers_is_online_cpus(void **state)
{
	struct graced_server *srv = start_workers("0", "0");

	(void)state;
	assert_int_equal(
	    srv->nworkers, (unsigned)sysconf(_SC_NPROCESSORS_ONLN));
	graced_server_stop_now(srv, "test");
	assert_int_equal(graced_server_run(srv), 0);
	graced_server_free(srv);
}

static void
test_admin_drain_is_not_a_signal(void **state)
{
	struct graced_server *srv = start("60");

	(void)state;
	/* The admin drain begins the drain; the first signal after it is the
	 * first signal, not the second. */
	drain_begin(srv->drain, "admin");
	assert_int_equal(graced_server_state(srv), GRACED_DRAINING);
	graced_server_drain(srv, "SIGTERM");
	assert_int_equal(graced_server_state(srv), GRACED_DRAINING);
	graced_server_drain(srv, "SIGTERM");
	assert_int_equal(graced_server_state(srv), GRACED_STOPPING);
	assert_int_equal(graced_server_run(srv), 0);
	graced_server_free(srv);
}

static int closed_calls; /* the on_closed hook ran */

static void
count_closed(struct graced_server *srv, void *arg)
{
	(void)srv;
	(void)arg;
	closed_calls++;
}

/* A handover skips the drain delay and the readiness flip: /healthz stays
 * 200 while the listeners close, and a drain signal changes nothing. The
 * on_closed hooks run once, when the listeners are closed. */
static void
test_handover_stays_ready(void **state)
{
	const char *workers[] = { "1", "2" };

	(void)state;
	for (size_t i = 0; i < 2; i++) {
		struct graced_server *srv = start_workers("60", workers[i]);
		struct evbuffer *body = evbuffer_new();

		closed_calls = 0;
		assert_int_equal(
		    graced_server_on_closed(srv, count_closed, NULL), 0);
		graced_server_handover(srv, "test");
		assert_int_equal(closed_calls, 0);
		assert_int_equal(graced_server_state(srv), GRACED_STOPPING);
		assert_true(drain_handing_over(srv->drain));
		assert_int_equal(health_render(srv->health, body), 200);
		graced_server_drain(srv, "SIGTERM");
		assert_int_equal(graced_server_state(srv), GRACED_STOPPING);
		/* Only from SERVING. */
		graced_server_handover(srv, "again");
		assert_int_equal(graced_server_run(srv), 0);
		assert_int_equal(graced_server_state(srv), GRACED_STOPPED);
		assert_int_equal(closed_calls, 1);
		evbuffer_free(body);
		graced_server_free(srv);
	}
}

static void
test_transitions_only_go_forward(void **state)
{
	struct graced_server *srv = start("60");

	(void)state;
	drain_stop(srv->drain, "not draining yet");
	assert_int_equal(graced_server_state(srv), GRACED_SERVING);
	drain_begin(srv->drain, "test");
	drain_begin(srv->drain, "again");
	assert_int_equal(graced_server_state(srv), GRACED_DRAINING);
	drain_stop(srv->drain, "test");
	drain_begin(srv->drain, "too late");
	assert_int_equal(graced_server_state(srv), GRACED_STOPPING);
	assert_int_equal(graced_server_run(srv), 0);
	drain_cut_off(srv->drain, "after the end");
	assert_int_equal(graced_server_state(srv), GRACED_STOPPED);
	graced_server_free(srv);
}

static void
test_stop_now_from_serving(void **state)
{
	struct graced_server *srv = start("60");

	(void)state;
	graced_server_stop_now(srv, "test");
	/* The workers cut off on their own loops, then report. */
	assert_int_equal(graced_server_state(srv), GRACED_STOPPING);
	/* Nothing was in flight: nothing was cut off. */
	assert_int_equal(graced_server_run(srv), 0);
	assert_int_equal(graced_server_state(srv), GRACED_STOPPED);
	assert_int_equal(graced_server_state(srv), GRACED_STOPPED);
	graced_server_free(srv);
}

/* Entries of a /proc/self directory ("task": threads, "fd":
 * descriptors). */
static unsigned
proc_count(const char *what)
{
	char path[64];
	DIR *d;
	struct dirent *e;
	unsigned n = 0;

	snprintf(path, sizeof(path), "/proc/self/%s", what);
	d = opendir(path);
	assert_non_null(d);
	while ((e = readdir(d)) != NULL)
		n += e->d_name[0] != '.';
	closedir(d);
	return n;
}

/* Waits, 2 s at most, for the threads to be back to n: a joined thread
 * leaves /proc a moment after pthread_join returns. */
static unsigned
threads_back_to(unsigned n)
{
	for (int i = 0; i < 2000 && proc_count("task") != n; i++) {
		struct timespec ms = { 0, 1000000 };
		nanosleep(&ms, NULL);
	}
	return proc_count("task");
}

static void
test_free_without_start(void **state)
{
	struct graced_config *cfg = graced_config_new();
	struct graced_server *srv;
	unsigned threads = proc_count("task"), fds = proc_count("fd");
	char err[256];

	(void)state;
	/* The daemon frees a server it never started when its spool cannot
	 * be opened. */
	assert_int_equal(
	    graced_config_set(cfg, "workers", "3", err, sizeof(err)), 0);
	assert_int_equal(
	    graced_config_set(cfg, "log-file", "/dev/null", err, sizeof(err)),
	    0);
	srv = graced_server_new(cfg);
	assert_non_null(srv);
	assert_int_equal(graced_server_state(srv), GRACED_STARTING);
	assert_null(graced_server_address(srv, 0));
	assert_null(graced_server_address(srv, 1));
	/* The log writer, and no worker: workers are made by the start. */
	assert_int_equal(proc_count("task"), threads + 1);
	assert_int_equal(srv->nworkers, 3);
	assert_null(srv->workers);
	/* Not started, nothing to run. */
	assert_int_equal(graced_server_run(srv), -EINVAL);
	graced_server_free(srv);
	graced_config_free(cfg);
	assert_int_equal(threads_back_to(threads), threads);
	assert_int_equal(proc_count("fd"), fds);
}

static void
test_start_failure_leaves_nothing_bound(void **state)
{
	struct graced_server *a = start("1");
	struct graced_config *cfg = graced_config_new();
	struct graced_server *b;
	int port = lb_free_port(), aport;
	const char *colon = strrchr(graced_server_address(a, 0), ':');
	char err[256], listen[64];

	(void)state;
	/* Public on a free port (two workers: two listeners), admin on a's
	 * public port: the public listeners are bound when admin fails. */
	assert_true(port > 0);
	aport = atoi(colon + 1);
	snprintf(listen, sizeof(listen), "127.0.0.1:%d", port);
	assert_int_equal(
	    graced_config_set(cfg, "listen", listen, err, sizeof(err)), 0);
	assert_int_equal(graced_config_set(cfg, "admin-listen",
	                     graced_server_address(a, 0), err, sizeof(err)),
	    0);
	assert_int_equal(
	    graced_config_set(cfg, "workers", "2", err, sizeof(err)), 0);
	assert_int_equal(
	    graced_config_set(cfg, "log-file", "/dev/null", err, sizeof(err)),
	    0);
	b = graced_server_new(cfg);
	assert_non_null(b);
	assert_int_equal(graced_server_start(b), -EADDRINUSE);
	assert_int_equal(graced_server_state(b), GRACED_STARTING);
	assert_null(graced_server_address(b, 0));
	/* b's port can be bound again at once, by a socket without
	 * SO_REUSEADDR (no connection was made: no TIME_WAIT), while a
	 * still holds its own. */
	assert_true(lb_port_is_free(port));
	assert_false(lb_port_is_free(aport));
	assert_int_equal(graced_server_state(a), GRACED_SERVING);
	graced_server_free(b);
	graced_config_free(cfg);
	graced_server_stop_now(a, "test");
	graced_server_free(a);
}

/* A bare drain with no workers on a loop of the test's own. */
struct bare {
	struct graced_config *cfg;
	struct event_base *base;
	struct drain *d;
	unsigned watched; /* watcher calls */
	struct event *release_ev;
};

static void
bare_watch(void *arg)
{
	struct bare *b = arg;

	b->watched++;
	/* What the admin listener does for a waiting "drain --wait". */
	if (drain_listeners_closed(b->d) && b->watched == 1)
		drain_hold(b->d);
}

static void
bare_release(evutil_socket_t fd, short what, void *arg)
{
	struct bare *b = arg;

	(void)fd;
	(void)what;
	drain_release(b->d);
}

/* Drains a bare drain to STOPPED while a hold is taken; release_ms < 0
 * never releases it. Returns how long the loop ran, in ms. */
static uint64_t
run_held(int release_ms, unsigned *watched)
{
	struct bare b = { graced_config_new(), event_base_new(), NULL, 0,
		NULL };
	struct timeval release = { 0, release_ms * 1000 };
	char err[256];
	uint64_t t0;

	assert_int_equal(
	    graced_config_set(b.cfg, "drain-delay", "0", err, sizeof(err)), 0);
	b.d = drain_new(NULL, b.cfg, b.base);
	assert_non_null(b.d);
	drain_watch(b.d, bare_watch, &b);
	b.release_ev = evtimer_new(b.base, bare_release, &b);
	if (release_ms >= 0)
		evtimer_add(b.release_ev, &release);
	drain_serving(b.d, "-", "-");
	drain_begin(b.d, "test");
	assert_int_equal(drain_state(b.d), GRACED_STOPPING);
	/* No worker to wait for: the next check finishes the drain. */
	drain_wake(b.d);
	t0 = now_ms();
	assert_int_equal(event_base_dispatch(b.base), 0);
	assert_int_equal(drain_state(b.d), GRACED_STOPPED);
	*watched = b.watched;
	event_free(b.release_ev);
	drain_free(b.d);
	event_base_free(b.base);
	graced_config_free(b.cfg);
	return now_ms() - t0;
}

/* The loop ends in one place: when the last hold is released, and one
 * second after STOPPED at the latest. */
static void
test_hold_delays_the_end_of_the_loop(void **state)
{
	unsigned watched;
	uint64_t ms;

	(void)state;
	ms = run_held(200, &watched);
	assert_true(ms >= 150 && ms < 900);
	/* Told once the listeners closed, and again at STOPPED. */
	assert_int_equal(watched, 2);
	ms = run_held(-1, &watched);
	assert_true(ms >= 900 && ms < 2000);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_state_names),
		cmocka_unit_test(test_second_signal_skips_delay),
		cmocka_unit_test(test_delay_zero_goes_straight_to_stopping),
		cmocka_unit_test(test_delay_timer_ends_draining),
		cmocka_unit_test(test_every_worker_closes_before_stopped),
		cmocka_unit_test(test_default_workers_is_online_cpus),
		cmocka_unit_test(test_admin_drain_is_not_a_signal),
		cmocka_unit_test(test_handover_stays_ready),
		cmocka_unit_test(test_transitions_only_go_forward),
		cmocka_unit_test(test_stop_now_from_serving),
		cmocka_unit_test(test_free_without_start),
		cmocka_unit_test(test_start_failure_leaves_nothing_bound),
		cmocka_unit_test(test_hold_delays_the_end_of_the_loop),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
