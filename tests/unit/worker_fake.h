/* One worker on a loop of the test's own, given a fake environment (its
 * wake-up and connection count are the test's), listening on 127.0.0.1 on
 * a port the kernel chose. Include it after cmocka.h. */
#ifndef GRACED_TEST_WORKER_FAKE_H
#define GRACED_TEST_WORKER_FAKE_H

#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

#include <event2/event.h>

#include "config.h"
#include "listener.h"
#include "router.h"
#include "worker.h"

struct worker_fake {
	struct graced_config *cfg;
	struct router router;
	struct worker_env env;
	struct event_base *base;
	struct worker *w;
	struct sockaddr_in sin;
	unsigned wakes;       /* env.wake calls */
	unsigned connections; /* what env.connections answers */
};

static inline void
worker_fake_wake(void *arg)
{
	struct worker_fake *f = arg;

	f->wakes++;
}

static inline unsigned
worker_fake_connections(void *arg)
{
	struct worker_fake *f = arg;

	return f->connections;
}

/* Serves the n routes (their handlers get arg) on f; srv is only handed
 * back by graced_request_server(). */
static inline void
worker_fake_start(struct worker_fake *f, const struct graced_route *routes,
    size_t n, void *arg, struct graced_server *srv)
{
	socklen_t len = sizeof(f->sin);
	char err[256];
	int fd;

	memset(f, 0, sizeof(*f));
	f->cfg = graced_config_new();
	assert_int_equal(graced_config_set(
	                     f->cfg, "listen", "127.0.0.1:0", err, sizeof(err)),
	    0);
	assert_int_equal(router_add(&f->router, routes, n, arg), 0);
	f->base = worker_base_new();
	assert_non_null(f->base);
	f->env = (struct worker_env){ f->cfg, &f->router, srv, f->base, 0,
		worker_fake_wake, worker_fake_connections, f };
	f->w = worker_new(&f->env, 0);
	assert_non_null(f->w);
	fd = listener_open(&f->cfg->listen, LISTENER_ALONE, err, sizeof(err));
	assert_true(fd >= 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&f->sin, &len), 0);
	assert_int_equal(worker_listen(f->w, fd), 0);
	/* A lone worker has no thread: starting it is a no-op. */
	assert_int_equal(worker_start(f->w), 0);
}

static inline void
worker_fake_free(struct worker_fake *f)
{
	worker_free(f->w);
	event_base_free(f->base);
	graced_config_free(f->cfg);
}

#endif
