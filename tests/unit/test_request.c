/* Unit tests for src/lib/request.c, the public request and reply calls:
 * handlers of the test's own on one worker on a loop of the test's own,
 * called by a loopback client. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include <event2/event.h>

#include "graced.h"
#include "loopback.h"
#include "worker_fake.h"

struct fake {
	struct worker_fake wf;
	int again[3]; /* what replying a second time returned, each way */
	struct graced_request *held; /* kept by /hold */
	unsigned aborted;            /* abort callbacks run */
	char body[64];               /* what /body read */
	size_t body_len;
	int body_empty;   /* it was "" */
	int accessors_ok; /* /body saw its request, loop and server */
};

static void
twice(struct graced_request *r, void *arg)
{
	struct fake *f = arg;

	assert_int_equal(graced_reply(r, 201, "text/plain", "one", 3), 0);
	f->again[0] = graced_reply(r, 200, "text/plain", "two", 3);
	/* The body is taken even when the reply is refused. */
	f->again[1] = graced_reply_json(r, 200, json_string("three"));
	f->again[2] = graced_reply_error(r, 500, "four");
}

static void
null_json(struct graced_request *r, void *arg)
{
	(void)arg;
	/* What a failed json_pack() hands over. */
	assert_int_equal(graced_reply_json(r, 200, NULL), 0);
}

static void
hello(struct graced_request *r, void *arg)
{
	(void)arg;
	graced_reply(r, 200, "text/plain", "hello", 5);
}

static void
body(struct graced_request *r, void *arg)
{
	struct fake *f = arg;
	const char *p = graced_request_body(r, &f->body_len);
	struct evhttp_request *req = graced_request_evhttp(r);

	assert_true(f->body_len < sizeof(f->body));
	memcpy(f->body, p, f->body_len);
	f->body_empty = p != NULL && f->body_len == 0 && p[0] == '\0';
	f->accessors_ok = req != NULL &&
	    evhttp_request_get_command(req) == EVHTTP_REQ_POST &&
	    graced_request_base(r) == f->wf.base &&
	    graced_request_server(r) == f->wf.env.srv;
	graced_reply(r, 200, NULL, NULL, 0);
}

static void
aborted(struct graced_request *r, void *arg)
{
	struct fake *f = arg;

	assert_ptr_equal(r, f->held);
	f->aborted++;
}

static void
hold(struct graced_request *r, void *arg)
{
	struct fake *f = arg;

	f->held = r;
	graced_request_on_abort(r, aborted, f);
}

static const struct graced_route routes[] = {
	{ "GET", "/twice", twice },
	{ "GET", "/null", null_json },
	{ "GET", "/hello", hello },
	{ "POST", "/body", body },
	{ "GET", "/hold", hold },
};

static struct fake *
fake_new(void)
{
	static struct fake f;
	char err[256];

	memset(&f, 0, sizeof(f));
	/* The server is only handed back: any pointer will do. */
	worker_fake_start(&f.wf, routes, 5, &f, (struct graced_server *)&f);
	assert_int_equal(
	    graced_config_set(f.wf.cfg, "access-log", "off", err, sizeof(err)),
	    0);
	return &f;
}

static void
fake_free(struct fake *f)
{
	worker_fake_free(&f->wf);
}

/* Sends request on a new connection and reads the reply into buf (NUL
 * terminated); returns the connection. */
static int
ask(struct fake *f, const char *request, char *buf, size_t len)
{
	int fd = lb_client(&f->wf.sin, request);
	ssize_t n;

	assert_true(fd >= 0);
	n = lb_recv(f->wf.base, fd, buf, len - 1);
	assert_true(n > 0);
	buf[n] = '\0';
	return fd;
}

static void
test_second_reply_is_refused(void **state)
{
	struct fake *f = fake_new();
	char buf[1024];
	int fd =
	    ask(f, "GET /twice HTTP/1.1\r\nHost: a\r\n\r\n", buf, sizeof(buf));

	(void)state;
	assert_int_equal(f->again[0], -EALREADY);
	assert_int_equal(f->again[1], -EALREADY);
	assert_int_equal(f->again[2], -EALREADY);
	/* Only the first went out. */
	assert_non_null(strstr(buf, "HTTP/1.1 201"));
	assert_non_null(strstr(buf, "Content-Length: 3\r\n"));
	assert_non_null(strstr(buf, "\r\n\r\none"));
	assert_null(strstr(buf, "two"));
	assert_null(strstr(buf, "HTTP/1.1 500"));
	assert_int_equal(worker_in_flight(f->wf.w), 0);
	close(fd);
	fake_free(f);
}

static void
test_json_without_a_body_is_a_500(void **state)
{
	struct fake *f = fake_new();
	char buf[1024];
	int fd =
	    ask(f, "GET /null HTTP/1.1\r\nHost: a\r\n\r\n", buf, sizeof(buf));

	(void)state;
	assert_non_null(strstr(buf, "HTTP/1.1 500"));
	assert_non_null(strstr(buf, "Content-Type: application/json\r\n"));
	assert_non_null(strstr(
	    buf, "\r\n\r\n{\"error\":\"out of memory\",\"status\":500}"));
	close(fd);
	fake_free(f);
}

/* A HEAD reply states the length of the body GET would send, and sends
 * none: the next reply on the connection starts right after its head. */
static void
test_head_has_a_length_and_no_body(void **state)
{
	struct fake *f = fake_new();
	char buf[1024];
	int fd = ask(f,
	    "HEAD /hello HTTP/1.1\r\nHost: a\r\n\r\n"
	    "GET /hello HTTP/1.1\r\nHost: a\r\n\r\n",
	    buf, sizeof(buf));
	size_t have = strlen(buf);
	char *end;

	(void)state;
	/* Both replies, however they came in. */
	while (strstr(buf, "\r\n\r\nhello") == NULL && have < sizeof(buf) - 1) {
		ssize_t n =
		    lb_recv(f->wf.base, fd, buf + have, sizeof(buf) - 1 - have);
		assert_true(n > 0);
		have += (size_t)n;
		buf[have] = '\0';
	}
	assert_true(strncmp(buf, "HTTP/1.1 200", 12) == 0);
	end = strstr(buf, "\r\n\r\n");
	assert_non_null(end);
	*end = '\0';
	assert_non_null(strstr(buf, "Content-Length: 5"));
	assert_true(strncmp(end + 4, "HTTP/1.1 200", 12) == 0);
	assert_non_null(strstr(end + 4, "\r\n\r\nhello"));
	close(fd);
	fake_free(f);
}

static void
test_replies_close_while_draining(void **state)
{
	struct fake *f = fake_new();
	char buf[1024];
	int fd, held;

	(void)state;
	fd = ask(f, "GET /hello HTTP/1.1\r\nHost: a\r\n\r\n", buf, sizeof(buf));
	assert_null(strstr(buf, "Connection: close"));
	close(fd);
	/* A request held when the drain begins, and one that comes after. */
	held = lb_client(&f->wf.sin, "GET /hold HTTP/1.1\r\nHost: a\r\n\r\n");
	LB_UNTIL(f->wf.base, f->held != NULL);
	assert_non_null(f->held);
	worker_send(f->wf.w, WORKER_DRAIN);
	fd = ask(f, "GET /hello HTTP/1.1\r\nHost: a\r\n\r\n", buf, sizeof(buf));
	assert_non_null(strstr(buf, "Connection: close"));
	assert_true(lb_closed(f->wf.base, fd));
	close(fd);
	graced_request_on_abort(f->held, NULL, NULL);
	assert_int_equal(graced_reply_error(f->held, 503, "bye"), 0);
	assert_true(lb_recv(f->wf.base, held, buf, sizeof(buf) - 1) > 0);
	assert_non_null(strstr(buf, "HTTP/1.1 503"));
	assert_non_null(strstr(buf, "Connection: close"));
	assert_true(lb_closed(f->wf.base, held));
	assert_int_equal(f->aborted, 0);
	close(held);
	fake_free(f);
}

static void
test_body_and_accessors(void **state)
{
	struct fake *f = fake_new();
	static const char req[] =
	    "POST /body HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\n"
	    "hello\0world";
	char buf[1024];
	int fd = lb_client(&f->wf.sin, NULL);

	(void)state;
	assert_int_equal(
	    send(fd, req, sizeof(req) - 1, 0), (ssize_t)sizeof(req) - 1);
	assert_true(lb_recv(f->wf.base, fd, buf, sizeof(buf)) > 0);
	assert_int_equal(f->body_len, 11);
	assert_memory_equal(f->body, "hello\0world", 11);
	assert_true(f->accessors_ok);
	close(fd);
	/* No body: an empty string, never NULL. */
	f->body_len = 99;
	fd = ask(f,
	    "POST /body HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n", buf,
	    sizeof(buf));
	assert_int_equal(f->body_len, 0);
	assert_true(f->body_empty);
	close(fd);
	fake_free(f);
}

/* Holds a request on a new connection, then resets the connection. */
static void
hold_then_vanish(struct fake *f)
{
	int fd = lb_client(&f->wf.sin, "GET /hold HTTP/1.1\r\nHost: a\r\n\r\n");

	assert_true(fd >= 0);
	LB_UNTIL(f->wf.base, f->held != NULL);
	assert_non_null(f->held);
	lb_reset(fd);
}

/* A held request whose client left ends without a reply: its abort
 * callback runs, once, when the server lets go of it. */
static void
test_abort_runs_once_for_a_vanished_client(void **state)
{
	struct fake *f = fake_new();

	(void)state;
	hold_then_vanish(f);
	worker_send(f->wf.w, WORKER_CUT_OFF);
	LB_UNTIL(f->wf.base, f->aborted > 0);
	assert_int_equal(f->aborted, 1);
	for (int i = 0; i < 10; i++)
		lb_step(f->wf.base);
	assert_int_equal(f->aborted, 1);
	assert_int_equal(worker_connections(f->wf.w), 0);
	assert_int_equal(worker_in_flight(f->wf.w), 0);
	fake_free(f);
}

/* After a reply the request is the library's: the abort callback must not
 * run even if writing the reply finds the client gone (a handler frees its
 * state when it replies, as examples/longpoll.c does). */
static void
test_no_abort_after_the_reply(void **state)
{
	struct fake *f = fake_new();

	(void)state;
	hold_then_vanish(f);
	assert_int_equal(
	    graced_reply(f->held, 200, "text/plain", "late", 4), 0);
	LB_UNTIL(f->wf.base, worker_connections(f->wf.w) == 0);
	assert_int_equal(worker_connections(f->wf.w), 0);
	assert_int_equal(worker_in_flight(f->wf.w), 0);
	assert_int_equal(f->aborted, 0);
	fake_free(f);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_second_reply_is_refused),
		cmocka_unit_test(test_json_without_a_body_is_a_500),
		cmocka_unit_test(test_head_has_a_length_and_no_body),
		cmocka_unit_test(test_replies_close_while_draining),
		cmocka_unit_test(test_body_and_accessors),
		cmocka_unit_test(test_abort_runs_once_for_a_vanished_client),
		cmocka_unit_test(test_no_abort_after_the_reply),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
