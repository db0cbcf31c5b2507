/* The generation's side of the control link (generation.h). Everything
 * runs on the main loop but the count and metrics hooks, which read the
 * counts as atomics from any thread. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>

#include "generation.h"
#include "graced.h"
#include "supervisor.h"
#include "util.h"

struct generation {
	struct graced_server *srv;
	struct bufferevent *link; /* NULL: no supervisor, or it is gone */
	/* Written by the main loop (SHARED_SET), read by the hooks. */
	unsigned long long n, ok, failed, draining;
};

static unsigned long long
count_generation(void *arg)
{
	struct generation *g = arg;

	return SHARED_GET(&g->n);
}

static unsigned long long
count_draining(void *arg)
{
	struct generation *g = arg;

	return SHARED_GET(&g->draining);
}

static void
metrics(struct evbuffer *out, void *arg)
{
	struct generation *g = arg;

	evbuffer_add_printf(out,
	    "# HELP graced_generation This process's generation: 1 at start, "
	    "one more with each upgrade.\n"
	    "# TYPE graced_generation gauge\n"
	    "graced_generation %llu\n"
	    "# HELP graced_upgrades_total Upgrades since the service started, "
	    "by result (ok, failed: rolled back).\n"
	    "# TYPE graced_upgrades_total counter\n"
	    "graced_upgrades_total{result=\"ok\"} %llu\n"
	    "graced_upgrades_total{result=\"failed\"} %llu\n"
	    "# HELP graced_generations_draining Older generations still "
	    "finishing their requests after an upgrade.\n"
	    "# TYPE graced_generations_draining gauge\n"
	    "graced_generations_draining %llu\n",
	    SHARED_GET(&g->n), SHARED_GET(&g->ok), SHARED_GET(&g->failed),
	    SHARED_GET(&g->draining));
}

static void
send_line(struct generation *g, const char *line)
{
	if (g->link != NULL)
		evbuffer_add_printf(
		    bufferevent_get_output(g->link), "%s\n", line);
}

static void
on_drain(struct graced_server *srv, void *arg)
{
	(void)srv;
	/* A handover runs the drain hooks too; the supervisor knows. */
	send_line(arg, "DRAINING");
}

static void
on_closed(struct graced_server *srv, void *arg)
{
	(void)srv;
	/* In a handover the supervisor waits for it: only then does a new
	 * connection surely reach the new generation. */
	send_line(arg, "CLOSED");
}

static void
on_upgrade(struct graced_server *srv, void *arg)
{
	struct generation *g = arg;

	if (g->link == NULL) {
		graced_server_upgrade_reply(srv, 503,
		    json_pack("{s:s,s:s,s:i}", "result", "failed", "error",
		        "the supervisor is gone", "status", 503));
		return;
	}
	send_line(g, "UPGRADE");
}

static void
message(struct generation *g, const char *line)
{
	unsigned long long ok, failed, draining;
	int status, n;

	if (strcmp(line, "STOP") == 0) {
		graced_server_handover(g->srv, "upgrade");
	} else if (sscanf(line, "STATS %llu %llu %llu", &ok, &failed,
	               &draining) == 3) {
		SHARED_SET(&g->ok, ok);
		SHARED_SET(&g->failed, failed);
		SHARED_SET(&g->draining, draining);
	} else if (sscanf(line, "UPGRADE %d %n", &status, &n) == 1) {
		graced_server_upgrade_reply(
		    g->srv, status, json_loads(line + n, 0, NULL));
	}
}

static void
read_cb(struct bufferevent *bev, void *arg)
{
	char *line;

	while ((line = evbuffer_readln(bufferevent_get_input(bev), NULL,
	            EVBUFFER_EOL_LF)) != NULL) {
		message(arg, line);
		free(line);
	}
}

static void
event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct generation *g = arg;

	(void)bev;
	if (!(what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)))
		return;
	bufferevent_free(g->link);
	g->link = NULL;
	/* The supervisor was killed: nobody would pass on a signal or reap
	 * us, so the service ends now, cleanly. */
	graced_server_drain(g->srv, "supervisor gone");
}

struct generation *
generation_new(struct graced_server *srv)
{
	struct generation *g = calloc(1, sizeof(*g));
	const char *fd = getenv(SUPERVISOR_CONTROL_ENV);
	const char *n = getenv(SUPERVISOR_GENERATION_ENV);

	if (g == NULL)
		return NULL;
	g->srv = srv;
	g->n = n != NULL && atoi(n) > 0 ? (unsigned long long)atoi(n) : 1;
	if (fd != NULL && atoi(fd) > 2) {
		g->link = bufferevent_socket_new(
		    graced_server_base(srv), atoi(fd), BEV_OPT_CLOSE_ON_FREE);
		if (g->link == NULL) {
			free(g);
			return NULL;
		}
		evutil_make_socket_closeonexec(atoi(fd));
		evutil_make_socket_nonblocking(atoi(fd));
		bufferevent_setcb(g->link, read_cb, NULL, event_cb, g);
		bufferevent_enable(g->link, EV_READ);
		graced_server_on_upgrade(srv, on_upgrade, g);
	}
	unsetenv(SUPERVISOR_CONTROL_ENV);
	unsetenv(SUPERVISOR_GENERATION_ENV);
	if (graced_server_add_count(srv, "generation", count_generation, g) <
	        0 ||
	    graced_server_add_count(
	        srv, "generations_draining", count_draining, g) < 0 ||
	    graced_server_add_metrics(srv, metrics, g) < 0 ||
	    graced_server_on_drain(srv, on_drain, g) < 0 ||
	    graced_server_on_closed(srv, on_closed, g) < 0) {
		generation_free(g);
		return NULL;
	}
	return g;
}

void
generation_ready(struct generation *g)
{
	send_line(g, "READY");
}

void
generation_usr2(struct generation *g)
{
	graced_log("upgrade_refused",
	    json_pack("{s:s,s:s}", "by", "SIGUSR2", "reason",
	        g->link != NULL ? "send SIGUSR2 to the supervisor, the "
	                          "process the service was started as" :
	                          "no supervisor (--supervisor off)"));
}

void
generation_free(struct generation *g)
{
	if (g == NULL)
		return;
	if (g->link != NULL)
		bufferevent_free(g->link);
	free(g);
}
