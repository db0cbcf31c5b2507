/* For the unit tests that serve on a loop of their own: a loopback client,
 * and the loop run in bounded steps until something the test awaits has
 * happened (never a sleep standing in for an event). */
#ifndef GRACED_TEST_LOOPBACK_H
#define GRACED_TEST_LOOPBACK_H

#include <netinet/in.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/http.h>

/* Steps of at most 5 ms each: 2 s in all before a test gives up. */
#define LB_STEPS 400

static inline void
lb_tick(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
}

/* One step of base: runs what is ready, waiting at most 5 ms for it. */
static inline void
lb_step(struct event_base *base)
{
	struct timeval tv = { 0, 5000 };

	event_base_once(base, -1, EV_TIMEOUT, lb_tick, NULL, &tv);
	event_base_loop(base, EVLOOP_ONCE);
}

/* Steps base until cond holds, LB_STEPS at most: assert cond after. */
#define LB_UNTIL(base, cond)                                   \
	for (int lb_i = 0; lb_i < LB_STEPS && !(cond); lb_i++) \
	lb_step(base)

/* Steps base until fd has bytes or is closed; returns what recv read
 * (0 at EOF, -1 if nothing came in time or on error). */
static inline ssize_t
lb_recv(struct event_base *base, int fd, char *buf, size_t len)
{
	for (int i = 0; i < LB_STEPS; i++) {
		struct pollfd p = { fd, POLLIN, 0 };
		if (poll(&p, 1, 0) == 1)
			return recv(fd, buf, len, 0);
		lb_step(base);
	}
	return -1;
}

/* Steps base until fd's peer closed it, reading (and dropping) what comes
 * before; returns 1 if it closed in time. */
static inline int
lb_closed(struct event_base *base, int fd)
{
	char buf[4096];

	for (int i = 0; i < LB_STEPS; i++) {
		ssize_t n = lb_recv(base, fd, buf, sizeof(buf));
		if (n <= 0)
			return n == 0;
	}
	return 0;
}

/* Whether fd has nothing to read and is still open, right now. */
static inline int
lb_quiet(int fd)
{
	struct pollfd p = { fd, POLLIN, 0 };

	return poll(&p, 1, 0) == 0;
}

/* The port of evhttp's socket bound to 127.0.0.1:0, into sin. */
static inline int
lb_bind(struct evhttp *http, struct sockaddr_in *sin)
{
	struct evhttp_bound_socket *b =
	    evhttp_bind_socket_with_handle(http, "127.0.0.1", 0);
	socklen_t len = sizeof(*sin);

	if (b == NULL)
		return -1;
	return getsockname(
	    evhttp_bound_socket_get_fd(b), (struct sockaddr *)sin, &len);
}

/* A new connection to sin that has sent request (NULL: nothing); -1 on
 * failure. */
static inline int
lb_client(const struct sockaddr_in *sin, const char *request)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	if (fd < 0 ||
	    connect(fd, (const struct sockaddr *)sin, sizeof(*sin)) < 0 ||
	    (request != NULL &&
	        send(fd, request, strlen(request), 0) !=
	            (ssize_t)strlen(request))) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return fd;
}

/* A port nothing listens on: bound, read back, closed. */
static inline int
lb_free_port(void)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	socklen_t len = sizeof(sin);
	int fd = socket(AF_INET, SOCK_STREAM, 0), port = -1;

	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(fd, (struct sockaddr *)&sin, len) == 0 &&
	    getsockname(fd, (struct sockaddr *)&sin, &len) == 0)
		port = ntohs(sin.sin_port);
	close(fd);
	return port;
}

/* Whether a plain socket (no SO_REUSEADDR) can bind port and listen. */
static inline int
lb_port_is_free(int port)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	int fd = socket(AF_INET, SOCK_STREAM, 0), ok;

	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sin.sin_port = htons((uint16_t)port);
	ok = bind(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0 &&
	    listen(fd, 1) == 0;
	close(fd);
	return ok;
}

/* Closes fd with a reset instead of a FIN. */
static inline void
lb_reset(int fd)
{
	struct linger l = { 1, 0 };

	setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
	close(fd);
}

#endif
