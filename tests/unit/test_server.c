/* The public API end to end, in-process: a user route whose handler replies
 * later from a timer, hooks, and a request cut off at the shutdown timeout.
 * A client thread talks to the server over a real loopback socket. */
#include <errno.h>
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>
#include <cmocka.h>

#include "graced.h"
#include "loopback.h"
#include "server.h"

struct app {
	struct graced_server *srv;
	struct graced_request *held;
	struct event *timer;
	int reply; /* reply from the timer, or hold forever */
	int replied, aborted, drains, stops;
	int replied_before_stop;
	double seconds_left;
};

struct client {
	char addr[300];
	char response[4096];
	ssize_t len;
};

static void
later(evutil_socket_t fd, short what, void *arg)
{
	struct app *app = arg;

	(void)fd;
	(void)what;
	assert_int_equal(
	    graced_reply(app->held, 200, "text/plain", "later", 5), 0);
	/* A second reply is refused, not sent. */
	assert_int_equal(
	    graced_reply(app->held, 500, NULL, NULL, 0), -EALREADY);
	app->replied++;
}

static void
aborted(struct graced_request *r, void *arg)
{
	struct app *app = arg;

	assert_ptr_equal(r, app->held);
	app->aborted++;
}

static void
drain_now(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	graced_server_drain(arg, "test");
}

static void
slow(struct graced_request *r, void *arg)
{
	struct app *app = arg;
	struct timeval tv = { 0, 100000 };

	app->held = r;
	graced_request_on_abort(r, aborted, app);
	if (app->reply) {
		app->timer = evtimer_new(graced_request_base(r), later, app);
		evtimer_add(app->timer, &tv);
	}
	/* The drain begins while this request is held. It belongs to the main
	 * loop, and this handler may run on a worker's thread. */
	event_base_once(graced_server_base(graced_request_server(r)), -1,
	    EV_TIMEOUT, drain_now, graced_request_server(r), NULL);
}

static void
on_drain(struct graced_server *srv, void *arg)
{
	struct app *app = arg;

	assert_int_equal(graced_server_state(srv), GRACED_DRAINING);
	app->drains++;
}

static void
on_stop(struct graced_server *srv, double seconds_left, void *arg)
{
	struct app *app = arg;

	assert_int_equal(graced_server_state(srv), GRACED_STOPPED);
	app->stops++;
	app->replied_before_stop = app->replied;
	app->seconds_left = seconds_left;
}

static const struct graced_route routes[] = {
	{ "GET", "/slow", slow },
};

static void *
client_run(void *arg)
{
	struct client *c = arg;
	struct addrinfo hints, *res;
	char *colon = strrchr(c->addr, ':');
	struct timeval tv = { 5, 0 };
	static const char req[] = "GET /slow HTTP/1.1\r\nHost: t\r\n\r\n";
	int fd;

	*colon = '\0';
	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	if (getaddrinfo(c->addr, colon + 1, &hints, &res) != 0)
		return NULL;
	fd = socket(res->ai_family, SOCK_STREAM, 0);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (connect(fd, res->ai_addr, res->ai_addrlen) == 0 &&
	    send(fd, req, sizeof(req) - 1, 0) > 0) {
		/* Read until the server closes: it must, while draining. */
		for (;;) {
			ssize_t n = recv(fd, c->response + c->len,
			    sizeof(c->response) - 1 - (size_t)c->len, 0);
			if (n <= 0)
				break;
			c->len += n;
		}
	}
	c->response[c->len] = '\0';
	close(fd);
	freeaddrinfo(res);
	return NULL;
}

static int
serve(
    struct app *app, struct client *c, const char *timeout, const char *workers)
{
	struct graced_config *cfg = graced_config_new();
	char err[256];
	pthread_t t;
	int rc;

	assert_int_equal(
	    graced_config_set(cfg, "listen", "127.0.0.1:0", err, sizeof(err)),
	    0);
	assert_int_equal(graced_config_set(cfg, "admin-listen", "127.0.0.1:0",
	                     err, sizeof(err)),
	    0);
	assert_int_equal(
	    graced_config_set(cfg, "drain-delay", "0.02", err, sizeof(err)), 0);
	assert_int_equal(graced_config_set(cfg, "shutdown-timeout", timeout,
	                     err, sizeof(err)),
	    0);
	assert_int_equal(
	    graced_config_set(cfg, "log-file", "/dev/null", err, sizeof(err)),
	    0);
	assert_int_equal(
	    graced_config_set(cfg, "workers", workers, err, sizeof(err)), 0);
	app->srv = graced_server_new(cfg);
	graced_config_free(cfg);
	assert_non_null(app->srv);
	assert_int_equal(graced_server_add_routes(app->srv, routes, 1, app), 0);
	assert_int_equal(graced_server_on_drain(app->srv, on_drain, app), 0);
	assert_int_equal(graced_server_on_stop(app->srv, on_stop, app), 0);
	assert_int_equal(graced_server_start(app->srv), 0);
	/* Routes are fixed once serving. */
	assert_int_equal(
	    graced_server_add_routes(app->srv, routes, 1, app), -EBUSY);
	snprintf(
	    c->addr, sizeof(c->addr), "%s", graced_server_address(app->srv, 0));
	assert_int_equal(pthread_create(&t, NULL, client_run, c), 0);
	rc = graced_server_run(app->srv);
	pthread_join(t, NULL);
	if (app->timer != NULL)
		event_free(app->timer);
	graced_server_free(app->srv);
	return rc;
}

static void
test_async_reply_finishes_the_drain(void **state)
{
	struct app app = { .reply = 1 };
	struct client c = { .len = 0 };

	(void)state;
	assert_int_equal(serve(&app, &c, "5", "1"), 0);
	assert_non_null(strstr(c.response, "HTTP/1.1 200"));
	assert_non_null(strstr(c.response, "Connection: close"));
	assert_non_null(strstr(c.response, "\r\n\r\nlater"));
	assert_int_equal(app.replied, 1);
	assert_int_equal(app.aborted, 0);
	assert_int_equal(app.drains, 1);
	assert_int_equal(app.stops, 1);
	/* on_stop ran after the last reply, with most of the timeout left. */
	assert_int_equal(app.replied_before_stop, 1);
	assert_true(app.seconds_left > 4.0 && app.seconds_left <= 5.0);
}

static void
test_held_request_is_cut_off_at_timeout(void **state)
{
	struct app app = { .reply = 0 };
	struct client c = { .len = 0 };

	(void)state;
	assert_int_equal(serve(&app, &c, "0.3", "1"), 1);
	/* The client saw the connection close with no response at all. */
	assert_int_equal(c.len, 0);
	assert_int_equal(app.aborted, 1);
	assert_int_equal(app.stops, 1);
	assert_true(app.seconds_left < 0.1);
}

static void
test_async_reply_with_two_workers(void **state)
{
	struct app app = { .reply = 1 };
	struct client c = { .len = 0 };

	(void)state;
	/* The handler runs on a worker thread; the drain and the hooks run
	 * on the main loop. */
	assert_int_equal(serve(&app, &c, "5", "2"), 0);
	assert_non_null(strstr(c.response, "HTTP/1.1 200"));
	assert_non_null(strstr(c.response, "Connection: close"));
	assert_int_equal(app.drains, 1);
	assert_int_equal(app.stops, 1);
	assert_int_equal(app.replied_before_stop, 1);
}

/* Each step of graced_server_start fails in turn: the call returns the
 * error, both ports can be bound again at once, and the same server then
 * starts for real. */
static void
failed_start_unbinds(const char *workers)
{
	for (int step = SERVER_STEP_ADMIN_BIND; step <= SERVER_STEP_THREADS;
	     step++) {
		struct graced_config *cfg = graced_config_new();
		struct graced_server *srv;
		char err[256], listen[64], admin[64];
		int port = lb_free_port(), aport = lb_free_port();

		snprintf(listen, sizeof(listen), "127.0.0.1:%d", port);
		snprintf(admin, sizeof(admin), "127.0.0.1:%d", aport);
		assert_int_equal(
		    graced_config_set(cfg, "listen", listen, err, sizeof(err)),
		    0);
		assert_int_equal(graced_config_set(cfg, "admin-listen", admin,
		                     err, sizeof(err)),
		    0);
		assert_int_equal(graced_config_set(cfg, "log-file", "/dev/null",
		                     err, sizeof(err)),
		    0);
		assert_int_equal(graced_config_set(
		                     cfg, "workers", workers, err, sizeof(err)),
		    0);
		srv = graced_server_new(cfg);
		graced_config_free(cfg);
		assert_non_null(srv);
		server_fail_step = step;
		assert_int_equal(graced_server_start(srv), -ECANCELED);
		server_fail_step = 0;
		assert_int_equal(graced_server_state(srv), GRACED_STARTING);
		assert_null(graced_server_address(srv, 0));
		assert_true(lb_port_is_free(port));
		assert_true(lb_port_is_free(aport));
		/* Nothing of the failed attempt is left in the way. */
		assert_int_equal(graced_server_start(srv), 0);
		assert_false(lb_port_is_free(port));
		graced_server_stop_now(srv, "test");
		assert_int_equal(graced_server_run(srv), 0);
		graced_server_free(srv);
	}
}

static void
test_failed_start_unbinds(void **state)
{
	(void)state;
	failed_start_unbinds("1");
}

static void
test_failed_start_unbinds_two_workers(void **state)
{
	(void)state;
	failed_start_unbinds("2");
}

static void
sigpipe_mine(int sig)
{
	(void)sig;
}

/* The disposition of SIGPIPE after graced_server_new, given the one
 * before. */
static void (*sigpipe_after(void (*before)(int)))(int)
{
	struct graced_config *cfg = graced_config_new();
	struct graced_server *srv;
	struct sigaction sa;
	char err[256];

	assert_int_equal(
	    graced_config_set(cfg, "log-file", "/dev/null", err, sizeof(err)),
	    0);
	signal(SIGPIPE, before);
	srv = graced_server_new(cfg);
	assert_non_null(srv);
	graced_server_free(srv);
	graced_config_free(cfg);
	assert_int_equal(sigaction(SIGPIPE, NULL, &sa), 0);
	signal(SIGPIPE, SIG_DFL);
	return sa.sa_handler;
}

/* The header's promise: only the default disposition is changed. */
static void
test_sigpipe_only_default_is_ignored(void **state)
{
	(void)state;
	assert_true(sigpipe_after(SIG_DFL) == SIG_IGN);
	assert_true(sigpipe_after(sigpipe_mine) == sigpipe_mine);
	assert_true(sigpipe_after(SIG_IGN) == SIG_IGN);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_async_reply_finishes_the_drain),
		cmocka_unit_test(test_held_request_is_cut_off_at_timeout),
		cmocka_unit_test(test_async_reply_with_two_workers),
		cmocka_unit_test(test_failed_start_unbinds),
		cmocka_unit_test(test_failed_start_unbinds_two_workers),
		cmocka_unit_test(test_sigpipe_only_default_is_ignored),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
