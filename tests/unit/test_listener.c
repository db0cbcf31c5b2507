/* Unit tests for src/lib/listener.c: closing a listener without resetting
 * the connections waiting in its accept queue, deterministically (nothing
 * accepts until the test says so). */
#include <errno.h>
#include <fcntl.h>
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

#include "config.h"
#include "listener.h"

#define QUEUED 3

/* What listener_queue_len() reads for n waiting connections: the count, or,
 * without tcpi_unacked (the portable build), 1 for some and 0 for none. */
#ifdef HAVE_STRUCT_TCP_INFO_TCPI_UNACKED
#define SEEN(n) (n)
#else
#define SEEN(n) ((n) > 0)
#endif

static int
open_loopback(struct sockaddr_in *sin)
{
	struct config_addr addr = { "127.0.0.1", "0" };
	socklen_t len = sizeof(*sin);
	char err[256];
	int fd = listener_open(&addr, LISTENER_ALONE, err, sizeof(err));

	assert_true(fd >= 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)sin, &len), 0);
	return fd;
}

static int
client(const struct sockaddr_in *sin, int nonblock)
{
	int fd =
	    socket(AF_INET, SOCK_STREAM | (nonblock ? SOCK_NONBLOCK : 0), 0);
	int rc = connect(fd, (const struct sockaddr *)sin, sizeof(*sin));

	assert_true(rc == 0 || (nonblock && errno == EINPROGRESS));
	return fd;
}

/* Waits up to ms for the queue length to read want. */
static void
wait_queue(int lfd, int want)
{
	for (int i = 0; i < 200 && listener_queue_len(lfd) != SEEN(want); i++) {
		struct pollfd p = { lfd, POLLIN, 0 };
		poll(&p, 1, 5);
	}
	assert_int_equal(listener_queue_len(lfd), SEEN(want));
}

static void
test_queue_length_counts_waiting_connections(void **state)
{
	struct sockaddr_in sin;
	int lfd = open_loopback(&sin), c[QUEUED];

	(void)state;
	assert_int_equal(listener_queue_len(lfd), 0);
	for (int i = 0; i < QUEUED; i++)
		c[i] = client(&sin, 0);
	wait_queue(lfd, QUEUED);
	for (int i = 0; i < QUEUED; i++) {
		int a = accept(lfd, NULL, NULL);
		assert_true(a >= 0);
		close(a);
		close(c[i]);
	}
	assert_int_equal(listener_queue_len(lfd), 0);
	close(lfd);
}

static void
test_filter_drops_new_syns_and_queue_is_served(void **state)
{
	struct sockaddr_in sin;
	int lfd = open_loopback(&sin), c[QUEUED], late;
	struct pollfd p;
	char buf[16];

	(void)state;
	for (int i = 0; i < QUEUED; i++) {
		c[i] = client(&sin, 0);
		assert_int_equal(send(c[i], "ping", 4, 0), 4);
	}
	wait_queue(lfd, QUEUED);
#ifdef HAVE_LINUX_FILTER_H
	assert_int_equal(listener_filter_syns(lfd), 0);
#else
	/* No socket filters: the drain falls back to a backlog of 0. */
	assert_int_equal(listener_filter_syns(lfd), -EOPNOTSUPP);
	assert_int_equal(listener_shrink_backlog(lfd), 0);
#endif
	/* A new client's SYN is dropped: its connect stays in progress. */
	late = client(&sin, 1);
	p.fd = late;
	p.events = POLLOUT;
	assert_int_equal(poll(&p, 1, 200), 0);
	assert_int_equal(listener_queue_len(lfd), SEEN(QUEUED));
	/* Accept the queue to empty, then close: nothing queued is reset. */
	for (int i = 0; i < QUEUED; i++) {
		int a = accept(lfd, NULL, NULL);
		assert_true(a >= 0);
		assert_int_equal(recv(a, buf, sizeof(buf), 0), 4);
		assert_int_equal(send(a, "pong", 4, 0), 4);
		close(a);
	}
	assert_int_equal(listener_queue_len(lfd), 0);
	close(lfd);
	for (int i = 0; i < QUEUED; i++) {
		assert_int_equal(recv(c[i], buf, sizeof(buf), 0), 4);
		assert_memory_equal(buf, "pong", 4);
		close(c[i]);
	}
	close(late);
}

static void
test_zero_backlog_drops_syns_while_queued(void **state)
{
	struct sockaddr_in sin;
	int lfd = open_loopback(&sin), c, late, a;
	struct pollfd p;
	char buf[16];

	(void)state;
	/* The fallback for kernels that refuse socket filters: with one
	 * connection queued and a backlog of 0, a new SYN is dropped. */
	c = client(&sin, 0);
	wait_queue(lfd, 1);
	assert_int_equal(listener_shrink_backlog(lfd), 0);
	late = client(&sin, 1);
	p.fd = late;
	p.events = POLLOUT;
	assert_int_equal(poll(&p, 1, 200), 0);
	assert_int_equal(listener_queue_len(lfd), SEEN(1));
	/* The queued connection is still there to be accepted and served. */
	a = accept(lfd, NULL, NULL);
	assert_true(a >= 0);
	assert_int_equal(send(a, "pong", 4, 0), 4);
	assert_int_equal(recv(c, buf, sizeof(buf), 0), 4);
	close(a);
	close(c);
	close(late);
	close(lfd);
}

static void
test_adopt_heals_what_a_killed_drain_left(void **state)
{
	struct sockaddr_in sin;
	int lfd = open_loopback(&sin), c, a;
	char err[256];

	(void)state;
	/* What a predecessor killed in its drain leaves: the filter (where
	 * there are filters) and a backlog of 0. */
	listener_filter_syns(lfd);
	assert_int_equal(listener_shrink_backlog(lfd), 0);
	assert_int_equal(listener_adopt(lfd, err, sizeof(err)), 0);
	assert_true(fcntl(lfd, F_GETFD) & FD_CLOEXEC);
	assert_true(fcntl(lfd, F_GETFL) & O_NONBLOCK);
	/* Healed: two new clients are queued (a backlog of 0 drops the second
	 * SYN, a filter the first). */
	c = client(&sin, 0);
	a = client(&sin, 0);
	wait_queue(lfd, 2);
	close(c);
	close(a);
	close(lfd);
}

static void
test_adopt_refuses_what_is_not_listening(void **state)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	int dgram = socket(AF_INET, SOCK_DGRAM, 0);
	char err[256];

	(void)state;
	assert_int_equal(listener_adopt(fd, err, sizeof(err)), -ENOTSOCK);
	assert_non_null(strstr(err, "not a listening stream socket"));
	assert_int_equal(listener_adopt(dgram, err, sizeof(err)), -ENOTSOCK);
	assert_true(listener_adopt(999, err, sizeof(err)) < 0);
	close(fd);
	close(dgram);
}

static void
test_closing_without_accepting_resets_the_queue(void **state)
{
	struct sockaddr_in sin;
	int lfd = open_loopback(&sin), c;
	char buf[16];

	(void)state;
	/* Why the filter exists: the kernel resets whatever is queued. */
	c = client(&sin, 0);
	wait_queue(lfd, 1);
	close(lfd);
	assert_int_equal(recv(c, buf, sizeof(buf), 0), -1);
	assert_int_equal(errno, ECONNRESET);
	close(c);
}

static void
test_bind_error_names_the_address(void **state)
{
	struct sockaddr_in sin;
	int lfd = open_loopback(&sin);
	struct config_addr addr = { "127.0.0.1", "" };
	char err[256], buf[64];

	(void)state;
	snprintf(addr.port, sizeof(addr.port), "%u", ntohs(sin.sin_port));
	assert_int_equal(listener_open(&addr, LISTENER_ALONE, err, sizeof(err)),
	    -EADDRINUSE);
	snprintf(buf, sizeof(buf), "listen 127.0.0.1:%s", addr.port);
	assert_non_null(strstr(err, buf));
	assert_non_null(strstr(err, "in use"));
	close(lfd);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_queue_length_counts_waiting_connections),
		cmocka_unit_test(
		    test_filter_drops_new_syns_and_queue_is_served),
		cmocka_unit_test(test_zero_backlog_drops_syns_while_queued),
		cmocka_unit_test(
		    test_closing_without_accepting_resets_the_queue),
		cmocka_unit_test(test_bind_error_names_the_address),
		cmocka_unit_test(test_adopt_heals_what_a_killed_drain_left),
		cmocka_unit_test(test_adopt_refuses_what_is_not_listening),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
