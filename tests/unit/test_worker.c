/* Unit tests for src/lib/worker.c and the registry it owns (conn.c): one
 * worker on a loop of the test's own, given a fake environment (its wake-up
 * and connection count are the test's), served to by a loopback client. */
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>

#include <event2/event.h>

#include "config.h"
#include "listener.h"
#include "router.h"
#include "util.h"
#include "worker.h"
#include "worker_fake.h"

struct fake {
	struct worker_fake wf;
	struct graced_request *held;
};

static void
hello(struct graced_request *r, void *arg)
{
	(void)arg;
	graced_reply(r, 200, "text/plain", "hi", 2);
}

/* Keeps the request without replying. */
static void
hold(struct graced_request *r, void *arg)
{
	struct fake *f = arg;

	f->held = r;
}

static const struct graced_route routes[] = {
	{ "GET", "/hello", hello },
	{ "GET", "/hold", hold },
};

static struct fake *
fake_new(void)
{
	static struct fake f;

	memset(&f, 0, sizeof(f));
	worker_fake_start(&f.wf, routes, 2, &f, NULL);
	return &f;
}

static void
fake_free(struct fake *f)
{
	worker_fake_free(&f->wf);
}

/* Runs the loop until the client fd has bytes (or is closed) or cond
 * holds, at most 2 s; returns what was read. */
static ssize_t
pump(struct fake *f, int fd, char *buf, size_t len)
{
	for (int i = 0; i < 400; i++) {
		struct pollfd p = { fd, POLLIN, 0 };
		event_base_loop(f->wf.base, EVLOOP_NONBLOCK);
		if (fd >= 0 && poll(&p, 1, 5) == 1)
			return recv(fd, buf, len, 0);
	}
	return -1;
}

static int
client(struct fake *f, const char *request)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	assert_int_equal(
	    connect(fd, (const struct sockaddr *)&f->wf.sin, sizeof(f->wf.sin)),
	    0);
	assert_int_equal(
	    send(fd, request, strlen(request), 0), (ssize_t)strlen(request));
	return fd;
}

/* Sends GET path on a new connection and reads the reply into buf; returns
 * the connection. */
static int
get(struct fake *f, const char *path, char *buf, size_t len)
{
	char request[128];
	int fd;

	snprintf(request, sizeof(request), "GET %s HTTP/1.1\r\nHost: a\r\n\r\n",
	    path);
	fd = client(f, request);
	assert_true(pump(f, fd, buf, len - 1) > 0);
	return fd;
}

static void
test_serves_and_counts(void **state)
{
	struct fake *f = fake_new();
	const struct metrics *m = worker_metrics(f->wf.w);
	char buf[1024] = "";
	int fd = get(f, "/hello", buf, sizeof(buf));

	(void)state;
	assert_non_null(strstr(buf, "HTTP/1.1 200"));
	assert_non_null(strstr(buf, "X-Request-Id: "));
	assert_non_null(strstr(buf, "\r\n\r\nhi"));
	/* Serving: the reply does not close the connection. */
	assert_null(strstr(buf, "Connection: close"));
	assert_int_equal(worker_connections(f->wf.w), 1);
	assert_int_equal(worker_in_flight(f->wf.w), 0);
	assert_int_equal(COUNTER_GET(&m->accepted), 1);
	assert_int_equal(COUNTER_GET(&m->requests[0][0]), 1); /* /hello 200 */
	close(fd);
	fake_free(f);
}

static void
test_over_max_connections_gets_503(void **state)
{
	struct fake *f = fake_new();
	char buf[1024] = "";
	int fd;

	(void)state;
	/* The environment says the server is full. */
	f->wf.connections = f->wf.cfg->max_connections + 1;
	fd = get(f, "/hello", buf, sizeof(buf));
	assert_non_null(strstr(buf, "HTTP/1.1 503"));
	assert_non_null(strstr(buf, "too many connections"));
	assert_non_null(strstr(buf, "Connection: close"));
	close(fd);
	fake_free(f);
}

static void
test_drain_command_closes_replies(void **state)
{
	struct fake *f = fake_new();
	char buf[1024] = "";
	int fd;

	(void)state;
	worker_send(f->wf.w, WORKER_DRAIN);
	fd = get(f, "/hello", buf, sizeof(buf));
	assert_non_null(strstr(buf, "HTTP/1.1 200"));
	assert_non_null(strstr(buf, "Connection: close"));
	close(fd);
	fake_free(f);
}

static void
test_cut_off_reports_and_counts(void **state)
{
	struct fake *f = fake_new();
	char buf[256];
	int fd = client(f, "GET /hold HTTP/1.1\r\nHost: a\r\n\r\n");

	(void)state;
	for (int i = 0; i < 400 && f->held == NULL; i++)
		pump(f, -1, buf, sizeof(buf));
	assert_non_null(f->held);
	assert_int_equal(worker_in_flight(f->wf.w), 1);
	assert_false(worker_done(f->wf.w, WORKER_CUT_DONE));
	f->wf.wakes = 0;
	worker_send(f->wf.w, WORKER_CUT_OFF);
	/* The client sees its connection closed without a reply. */
	assert_int_equal(pump(f, fd, buf, sizeof(buf)), 0);
	assert_true(
	    worker_done(f->wf.w, WORKER_CUT_DONE | WORKER_LISTENER_CLOSED));
	assert_true(f->wf.wakes > 0);
	assert_int_equal(worker_connections(f->wf.w), 0);
	assert_int_equal(worker_in_flight(f->wf.w), 0);
	assert_int_equal(COUNTER_GET(&worker_metrics(f->wf.w)->cut_off), 1);
	close(fd);
	fake_free(f);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_serves_and_counts),
		cmocka_unit_test(test_over_max_connections_gets_503),
		cmocka_unit_test(test_drain_command_closes_replies),
		cmocka_unit_test(test_cut_off_reports_and_counts),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
