/* libFuzzer target: whole requests through a real graced server. One
 * server from the library (one worker on the main loop, the events
 * application spooling to /dev/null, port 0 on loopback) lives for the
 * whole process; each input is written on a fresh connection, the write
 * side is shut, and the loop runs until the server has closed that
 * connection, so graced's dispatch, connection registry and framing checks
 * all run on arbitrary bytes. An input that starts with '@' goes, without
 * the '@', to the admin listener instead; a server that it drained is
 * freed and made again for the next input. libevent 2.1 serves only
 * sockets it accepts itself, hence a loopback connection rather than a
 * socket pair. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <event2/event.h>

#include "events.h"
#include "graced.h"
#include "drain.h"
#include "server.h"

/* A run that the server has not closed within this many loop iterations
 * or this long is a freeze: a bug to report. */
#define FUZZ_MAX_ITERATIONS 10000
#define FUZZ_MAX_SECONDS 5

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* One run's connection to the server. */
struct client {
	const uint8_t *data;
	size_t size, sent; /* the input, and how much of it the server took */
	int fd;
	int closed; /* the server closed the connection */
	struct event *write_ev, *read_ev;
	struct event *tick_ev; /* wakes the loop to look at the clock */
};

static struct graced_server *srv;
static struct events *events;
static struct sockaddr_in addr[2]; /* public and admin */

static void
setup(void)
{
	static const char *const opts[][2] = {
		{ "listen", "127.0.0.1:0" },
		{ "admin-listen", "127.0.0.1:0" },
		{ "workers", "1" },
		{ "access-log", "off" },
		{ "log-file", "/dev/null" },
		{ "max-body", "65536" },
		/* POST /admin/drain?wait=1 answers within the run. */
		{ "drain-delay", "0" },
		{ "shutdown-timeout", "1" },
	};
	struct graced_config *cfg = graced_config_new();
	char err[512];

	if (cfg == NULL)
		abort();
	for (size_t i = 0; i < sizeof(opts) / sizeof(opts[0]); i++)
		if (graced_config_set(
		        cfg, opts[i][0], opts[i][1], err, sizeof(err)) < 0)
			abort();
	srv = graced_server_new(cfg);
	graced_config_free(cfg);
	events = events_new("/dev/null", err, sizeof(err));
	if (srv == NULL || events == NULL || events_attach(events, srv) < 0 ||
	    graced_server_start(srv) < 0)
		abort();
	for (int admin = 0; admin < 2; admin++) {
		const char *bound = graced_server_address(srv, admin);
		addr[admin].sin_family = AF_INET;
		addr[admin].sin_port =
		    htons((uint16_t)atoi(strrchr(bound, ':') + 1));
		addr[admin].sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	}
}

static void
teardown(void)
{
	graced_server_free(srv);
	events_free(events);
	srv = NULL;
	events = NULL;
}

static void
client_write(evutil_socket_t fd, short what, void *arg)
{
	struct client *c = arg;
	ssize_t n;

	(void)what;
	n = send(fd, c->data + c->sent, c->size - c->sent, MSG_NOSIGNAL);
	if (n > 0)
		c->sent += (size_t)n;
	/* Whatever is not taken once the server has closed never will be. */
	if (c->sent == c->size || (n < 0 && errno != EAGAIN)) {
		shutdown(fd, SHUT_WR);
		event_del(c->write_ev);
	}
}

static void
client_read(evutil_socket_t fd, short what, void *arg)
{
	struct client *c = arg;
	char buf[16384];
	ssize_t n;

	(void)what;
	n = recv(fd, buf, sizeof(buf), 0);
	if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
		c->closed = 1;
}

static void
client_tick(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int admin = size > 0 && data[0] == '@';
	struct client c = { data + admin, size - (size_t)admin, 0, -1, 0, NULL,
		NULL, NULL };
	const struct timeval tick = { 0, 100000 };
	static uint32_t runs;
	struct sockaddr_in from = { 0 };
	struct event_base *base;
	struct timeval start, now;

	if (srv == NULL)
		setup();
	base = graced_server_base(srv);
	c.fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	/* Each run comes from its own address in 127/8. From 127.0.0.1 alone,
	 * thousands of connections a second soon reuse a source port whose
	 * four-tuple the server still holds in TIME-WAIT, and such a SYN went
	 * unanswered for seconds (seen as a false freeze). */
	from.sin_family = AF_INET;
	from.sin_addr.s_addr = htonl(0x7f000000 | (++runs % 0xfffffe + 1));
	if (c.fd < 0 ||
	    bind(c.fd, (struct sockaddr *)&from, sizeof(from)) < 0 ||
	    (connect(c.fd, (struct sockaddr *)&addr[admin],
	         sizeof(addr[admin])) < 0 &&
	        errno != EINPROGRESS))
		abort();
	c.write_ev =
	    event_new(base, c.fd, EV_WRITE | EV_PERSIST, client_write, &c);
	c.read_ev =
	    event_new(base, c.fd, EV_READ | EV_PERSIST, client_read, &c);
	c.tick_ev = event_new(base, -1, EV_PERSIST, client_tick, &c);
	if (c.write_ev == NULL || c.read_ev == NULL || c.tick_ev == NULL)
		abort();
	event_add(c.write_ev, NULL);
	event_add(c.read_ev, NULL);
	event_add(c.tick_ev, &tick);
	gettimeofday(&start, NULL);
	/* Until the server has closed the connection and forgotten it. */
	for (int i = 0; !c.closed || drain_connections(srv->drain) > 0; i++) {
		gettimeofday(&now, NULL);
		if (i == FUZZ_MAX_ITERATIONS ||
		    now.tv_sec - start.tv_sec > FUZZ_MAX_SECONDS) {
			fprintf(stderr,
			    "fuzz_request: %s connection still open after %d "
			    "loop iterations (state %s, sent %zu of %zu, "
			    "closed %d, connections %u)\n",
			    admin ? "admin" : "public", i,
			    graced_state_name(graced_server_state(srv)), c.sent,
			    c.size, c.closed, drain_connections(srv->drain));
			abort();
		}
		event_base_loop(base, EVLOOP_ONCE);
	}
	event_free(c.write_ev);
	event_free(c.read_ev);
	event_free(c.tick_ev);
	close(c.fd);
	if (graced_server_state(srv) != GRACED_SERVING)
		teardown();
	return 0;
}
