/* Unit tests for src/lib/conn.c, the connection registry: a registry on an
 * evhttp of the test's own (no worker), bound to loopback, whose requests
 * the test dispatches itself and whose news it counts. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>

#include "conn.h"
#include "http.h"
#include "loopback.h"
#include "util.h"

struct fake {
	struct graced_config *cfg;
	struct router router;
	struct conn_env env;
	struct event_base *base;
	struct evhttp *http;
	struct conn_set *set;
	struct sockaddr_in sin;
	unsigned news[3];            /* how often each enum conn_news came */
	int full;                    /* what CONN_ADOPTED answers */
	int stop_at_accept;          /* leave the loop before the adoption */
	struct graced_request *held; /* the request /hold keeps */
	struct graced_request *last; /* the last request dispatched */
	enum framing_verdict verdicts[8]; /* conn_verdict of each request */
	unsigned nrequests;
	int overloaded; /* conn_overloaded of the last request */
};

/* Routes the test dispatches by id; no handler runs. */
static const struct graced_route routes[] = {
	{ "GET", "/a", NULL },
	{ "GET", "/hold", NULL },
};
#define ROUTE_A 0
#define ROUTE_HOLD 1

static int
fake_news(void *arg, enum conn_news news)
{
	struct fake *f = arg;

	f->news[news]++;
	if (news == CONN_ACCEPTED && f->stop_at_accept)
		event_base_loopbreak(f->base);
	return news == CONN_ADOPTED ? f->full : 0;
}

/* What worker_dispatch does with the registry, and nothing else: /hold is
 * kept, the rest answered 200. */
static void
fake_dispatch(struct evhttp_request *req, void *arg)
{
	struct fake *f = arg;
	struct graced_request *r = conn_find(f->set, req);
	const char *uri = evhttp_request_get_uri(req);
	struct router_match m;

	if (r == NULL) {
		evhttp_send_reply(req, 500, "untracked", NULL);
		return;
	}
	conn_request_begin(r, req);
	router_find(&f->router,
	    http_method_name(evhttp_request_get_command(req)), uri, strlen(uri),
	    &m);
	conn_route(r, m.id);
	f->verdicts[f->nrequests++ % 8] = conn_verdict(r);
	f->overloaded = conn_overloaded(r);
	f->last = r;
	if (m.id == ROUTE_HOLD) {
		f->held = r;
		return;
	}
	evhttp_send_reply(req, 200, "OK", NULL);
}

static struct fake *
fake_new(void)
{
	static struct fake f;
	char err[256];

	memset(&f, 0, sizeof(f));
	f.cfg = graced_config_new();
	assert_int_equal(
	    graced_config_set(f.cfg, "access-log", "off", err, sizeof(err)), 0);
	assert_int_equal(router_add(&f.router, routes, 2, NULL), 0);
	f.base = event_base_new();
	assert_non_null(f.base);
	/* The registry's adoption runs at priority 0, before evhttp's I/O. */
	assert_int_equal(event_base_priority_init(f.base, 2), 0);
	f.env =
	    (struct conn_env){ f.cfg, &f.router, NULL, f.base, fake_news, &f };
	f.set = conn_set_new(&f.env);
	assert_non_null(f.set);
	f.http = evhttp_new(f.base);
	assert_non_null(f.http);
	evhttp_set_bevcb(f.http, conn_bevcb, f.set);
	evhttp_set_gencb(f.http, fake_dispatch, &f);
	assert_int_equal(lb_bind(f.http, &f.sin), 0);
	return &f;
}

static void
fake_free(struct fake *f)
{
	/* evhttp_free's close callbacks empty the registry first. */
	evhttp_free(f->http);
	assert_int_equal(conn_count(f->set), 0);
	assert_int_equal(f->news[CONN_GONE], f->news[CONN_ACCEPTED]);
	conn_set_free(f->set);
	event_base_free(f->base);
	graced_config_free(f->cfg);
}

static uint64_t
counted(struct fake *f, size_t route, size_t code)
{
	return COUNTER_GET(&conn_metrics(f->set)->requests[route][code]);
}

/* The code index metrics.c counts status under. */
static size_t
code_index(int status)
{
	for (size_t i = 0; i < METRICS_OTHER; i++)
		if (metrics_code(i) == status)
			return i;
	return METRICS_OTHER;
}

static const char get_a[] = "GET /a HTTP/1.1\r\nHost: x\r\n\r\n";
static const char get_hold[] = "GET /hold HTTP/1.1\r\nHost: x\r\n\r\n";

/* A connection is adopted once and reported gone once, whether it ends
 * with a FIN or a reset, fresh, idle or halfway through a head. */
static void
test_each_connection_counts_once(void **state)
{
	struct fake *f = fake_new();
	char buf[512];
	int fresh, idle, half;

	(void)state;
	fresh = lb_client(&f->sin, NULL);
	LB_UNTIL(f->base, f->news[CONN_ADOPTED] == 1);
	assert_int_equal(f->news[CONN_ADOPTED], 1);
	assert_int_equal(f->news[CONN_ACCEPTED], 1);
	assert_int_equal(conn_count(f->set), 1);
	idle = lb_client(&f->sin, get_a);
	assert_true(lb_recv(f->base, idle, buf, sizeof(buf)) > 0);
	half = lb_client(&f->sin, "GET /a HTTP/1.1\r\nHo");
	LB_UNTIL(f->base, f->news[CONN_ADOPTED] == 3);
	assert_int_equal(conn_count(f->set), 3);
	assert_int_equal(COUNTER_GET(&conn_metrics(f->set)->accepted), 3);

	close(fresh);
	LB_UNTIL(f->base, f->news[CONN_GONE] == 1);
	assert_int_equal(f->news[CONN_GONE], 1);
	assert_int_equal(conn_count(f->set), 2);
	lb_reset(idle);
	LB_UNTIL(f->base, f->news[CONN_GONE] == 2);
	assert_int_equal(conn_count(f->set), 1);
	lb_reset(half);
	LB_UNTIL(f->base, f->news[CONN_GONE] == 3);
	assert_int_equal(conn_count(f->set), 0);
	/* Nothing more comes later. */
	for (int i = 0; i < 10; i++)
		lb_step(f->base);
	assert_int_equal(f->news[CONN_GONE], 3);
	assert_int_equal(f->news[CONN_ACCEPTED], 3);
	assert_int_equal(conn_count(f->set), 0);
	fake_free(f);
}

static void
test_full_registry_marks_the_connection(void **state)
{
	struct fake *f = fake_new();
	char buf[512];
	int fd;

	(void)state;
	fd = lb_client(&f->sin, get_a);
	assert_true(lb_recv(f->base, fd, buf, sizeof(buf)) > 0);
	assert_int_equal(f->overloaded, 0);
	close(fd);
	f->full = 1;
	fd = lb_client(&f->sin, get_a);
	assert_true(lb_recv(f->base, fd, buf, sizeof(buf)) > 0);
	assert_int_equal(f->overloaded, 1);
	close(fd);
	fake_free(f);
}

/* The drain's commands close what each promises and nothing else: idle
 * keep-alive connections, then those that never sent a byte, then heads
 * arriving too slowly; a request held by a handler only at the cut-off. */
static void
test_close_idle_fresh_slow_then_cut_off(void **state)
{
	struct fake *f = fake_new();
	char buf[512];
	int fresh, idle, half, busy;

	(void)state;
	fresh = lb_client(&f->sin, NULL);
	busy = lb_client(&f->sin, get_hold);
	LB_UNTIL(f->base, f->held != NULL);
	assert_non_null(f->held);
	half = lb_client(&f->sin, "GET /a HTTP/1.1\r\nHo");
	/* A request sent after half's bytes is answered after they were
	 * read (one loop reads every ready socket in a round). */
	idle = lb_client(&f->sin, get_a);
	assert_true(lb_recv(f->base, idle, buf, sizeof(buf)) > 0);
	LB_UNTIL(f->base, f->news[CONN_ADOPTED] == 4);
	assert_int_equal(conn_count(f->set), 4);
	assert_int_equal(conn_in_flight(f->set), 1);

	conn_close_idle(f->set, 0);
	assert_int_equal(conn_count(f->set), 3);
	assert_true(lb_closed(f->base, idle));
	assert_true(lb_quiet(fresh) && lb_quiet(half) && lb_quiet(busy));
	conn_close_idle(f->set, 1);
	assert_int_equal(conn_count(f->set), 2);
	assert_true(lb_closed(f->base, fresh));
	assert_true(lb_quiet(half) && lb_quiet(busy));
	/* half has been arriving for less than a minute, and for at least
	 * no time. */
	conn_sweep(f->set, 60000);
	assert_int_equal(conn_count(f->set), 2);
	conn_sweep(f->set, 0);
	assert_int_equal(conn_count(f->set), 1);
	assert_true(lb_closed(f->base, half));
	assert_true(lb_quiet(busy));
	assert_int_equal(conn_in_flight(f->set), 1);

	assert_int_equal(conn_cut_off(f->set), 1);
	f->held = NULL;
	assert_int_equal(conn_count(f->set), 0);
	assert_int_equal(conn_in_flight(f->set), 0);
	assert_int_equal(COUNTER_GET(&conn_metrics(f->set)->cut_off), 1);
	assert_int_equal(counted(f, ROUTE_HOLD, METRICS_ABORTED), 1);
	assert_true(lb_closed(f->base, busy));
	close(fresh);
	close(idle);
	close(half);
	close(busy);
	fake_free(f);
}

/* A request is in flight from conn_request_begin until its reply is
 * flushed, or until its connection closes if that comes first; either
 * way it leaves once and is counted once. */
static void
test_in_flight_until_done_or_closed(void **state)
{
	struct fake *f = fake_new();
	char buf[512];
	int fd = lb_client(&f->sin, get_hold);

	(void)state;
	LB_UNTIL(f->base, f->held != NULL);
	assert_non_null(f->held);
	assert_int_equal(conn_in_flight(f->set), 1);
	assert_int_equal(f->held->requests, 1);
	assert_ptr_equal(conn_find(f->set, f->held->req), f->held);
	assert_ptr_equal(conn_base(f->held), f->base);
	evhttp_send_reply(f->held->req, 404, "Not Found", NULL);
	/* Until the reply is flushed, it is still in flight. */
	assert_int_equal(conn_in_flight(f->set), 1);
	assert_true(lb_recv(f->base, fd, buf, sizeof(buf)) > 0);
	assert_non_null(strstr(buf, "HTTP/1.1 404"));
	LB_UNTIL(f->base, conn_in_flight(f->set) == 0);
	assert_int_equal(conn_in_flight(f->set), 0);
	assert_null(f->held->req);
	assert_int_equal(counted(f, ROUTE_HOLD, code_index(404)), 1);

	/* The next request on the same connection, and the client leaves
	 * while it is held. */
	f->held = NULL;
	assert_int_equal(
	    send(fd, get_hold, strlen(get_hold), 0), (ssize_t)strlen(get_hold));
	LB_UNTIL(f->base, f->held != NULL);
	assert_non_null(f->held);
	assert_int_equal(f->held->requests, 2);
	assert_int_equal(conn_in_flight(f->set), 1);
	lb_reset(fd);
	/* evhttp reads nothing while a request is held: the reply's write
	 * is what finds the connection gone. */
	evhttp_send_reply(f->held->req, 200, "OK", NULL);
	LB_UNTIL(f->base, f->news[CONN_GONE] == 1);
	assert_int_equal(f->news[CONN_GONE], 1);
	assert_int_equal(conn_in_flight(f->set), 0);
	assert_int_equal(counted(f, ROUTE_HOLD, METRICS_ABORTED), 1);
	assert_int_equal(counted(f, ROUTE_HOLD, code_index(200)), 0);
	fake_free(f);
}

/* A request that holds more than 16 KiB unread sets the input cap; a
 * small one does not. */
static void
test_input_cap_set_past_16k(void **state)
{
	struct fake *f = fake_new();
	static char body[40000];
	char head[128], buf[512];
	size_t cap = f->cfg->max_header_size + f->cfg->max_body, high = 0;
	int small, big;

	(void)state;
	small = lb_client(&f->sin, get_a);
	assert_true(lb_recv(f->base, small, buf, sizeof(buf)) > 0);
	assert_non_null(f->last);
	assert_int_equal(f->last->capped, 0);

	snprintf(head, sizeof(head),
	    "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: %zu\r\n\r\n",
	    sizeof(body));
	memset(body, 'b', sizeof(body));
	big = lb_client(&f->sin, head);
	assert_true(big >= 0);
	assert_int_equal(
	    send(big, body, sizeof(body), 0), (ssize_t)sizeof(body));
	assert_true(lb_recv(f->base, big, buf, sizeof(buf)) > 0);
	/* The whole body came through: the cap is above a legal request. */
	assert_non_null(strstr(buf, "HTTP/1.1 200"));
	assert_int_equal(f->nrequests, 2);
	assert_int_equal(f->last->capped, 1);
	bufferevent_getwatermark(f->last->bev, EV_READ, NULL, &high);
	assert_int_equal(high, cap);
	close(small);
	close(big);
	fake_free(f);
}

/* Pipelined requests: the framing check's verdict goes to the request
 * that broke the rule and those after it, never to the ones before. */
static void
test_verdict_goes_to_the_bad_request(void **state)
{
	struct fake *f = fake_new();
	char buf[512];
	/* The second lacks Host, which HTTP/1.1 requires. */
	int fd = lb_client(&f->sin,
	    "GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
	    "GET /a HTTP/1.1\r\n\r\n"
	    "GET /a HTTP/1.1\r\nHost: x\r\n\r\n");

	(void)state;
	LB_UNTIL(f->base, f->nrequests == 3);
	assert_int_equal(f->nrequests, 3);
	assert_int_equal(f->verdicts[0], FRAMING_OK);
	assert_int_equal(f->verdicts[1], FRAMING_HOST);
	assert_int_equal(f->verdicts[2], FRAMING_HOST);
	assert_int_equal(f->last->fr.bad, 2);
	assert_int_equal(
	    COUNTER_GET(&conn_metrics(f->set)->rejected[FRAMING_HOST]), 1);
	assert_true(lb_recv(f->base, fd, buf, sizeof(buf)) > 0);
	close(fd);
	fake_free(f);
}

/* Replies not sent yet carry Connection: close, and their connections
 * close after them; a connection with nothing held is left alone. */
static void
test_mark_close_closes_after_the_held_reply(void **state)
{
	struct fake *f = fake_new();
	char buf[512];
	int busy, idle;
	ssize_t n;

	(void)state;
	idle = lb_client(&f->sin, get_a);
	assert_true(lb_recv(f->base, idle, buf, sizeof(buf)) > 0);
	busy = lb_client(&f->sin, get_hold);
	LB_UNTIL(f->base, f->held != NULL);
	assert_non_null(f->held);
	conn_mark_close(f->set);
	evhttp_send_reply(f->held->req, 200, "OK", NULL);
	n = lb_recv(f->base, busy, buf, sizeof(buf) - 1);
	assert_true(n > 0);
	buf[n] = '\0';
	assert_non_null(strstr(buf, "Connection: close\r\n"));
	assert_true(lb_closed(f->base, busy));
	assert_int_equal(conn_count(f->set), 1);
	assert_true(lb_quiet(idle));
	close(busy);
	close(idle);
	fake_free(f);
}

/* evhttp may free a connection it accepted before the registry adopted
 * it (here: evhttp_free right after the accept): it is still reported
 * gone once, and nothing leaks (valgrind, ASan). */
static void
test_freed_before_adoption(void **state)
{
	struct fake *f = fake_new();
	int fd = lb_client(&f->sin, NULL);

	(void)state;
	assert_true(fd >= 0);
	f->stop_at_accept = 1;
	LB_UNTIL(f->base, f->news[CONN_ACCEPTED] == 1);
	assert_int_equal(f->news[CONN_ACCEPTED], 1);
	assert_int_equal(f->news[CONN_ADOPTED], 0);
	assert_int_equal(conn_count(f->set), 1);
	evhttp_free(f->http);
	f->http = NULL;
	conn_set_free(f->set);
	assert_int_equal(f->news[CONN_GONE], 1);
	assert_int_equal(f->news[CONN_ADOPTED], 0);
	assert_true(lb_closed(f->base, fd));
	close(fd);
	event_base_free(f->base);
	graced_config_free(f->cfg);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_each_connection_counts_once),
		cmocka_unit_test(test_full_registry_marks_the_connection),
		cmocka_unit_test(test_close_idle_fresh_slow_then_cut_off),
		cmocka_unit_test(test_in_flight_until_done_or_closed),
		cmocka_unit_test(test_input_cap_set_past_16k),
		cmocka_unit_test(test_verdict_goes_to_the_bad_request),
		cmocka_unit_test(test_mark_close_closes_after_the_held_reply),
		cmocka_unit_test(test_freed_before_adoption),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
