/* Health and metrics endpoints, on the public listener (through the router)
 * and on the admin listener (admin.c calls the same bodies). */
#include <event2/buffer.h>
#include <event2/http.h>

#include "health.h"
#include "metrics.h"
#include "server.h"
#include "util.h"
#include "worker.h"

int
health_render(struct graced_server *srv, struct evbuffer *out)
{
	enum graced_state state = server_state(srv);
	const char *status = state == GRACED_SERVING ? "ok" :
	    state == GRACED_STARTING                 ? "starting" :
	                                               "draining";

	/* Written by hand, not through jansson: this is the endpoint load
	 * balancers hit most, and every value is a number or a fixed word. */
	evbuffer_add_printf(out,
	    "{\"status\":\"%s\",\"state\":\"%s\",\"connections\":%u,"
	    "\"in_flight\":%u,\"workers\":[",
	    status, graced_state_name(state), server_connections(srv),
	    server_in_flight(srv));
	for (unsigned i = 0; i < srv->nworkers; i++) {
		const struct worker *w = srv->workers[i];
		evbuffer_add_printf(out,
		    "%s{\"connections\":%u,\"in_flight\":%u}", i ? "," : "",
		    COUNTER_GET(&w->nconns), COUNTER_GET(&w->in_flight));
	}
	evbuffer_add(out, "]", 1);
	if (state == GRACED_DRAINING)
		evbuffer_add_printf(out, ",\"drain_ms_left\":%llu",
		    (unsigned long long)drain_ms_left(srv));
	evbuffer_add(out, "}", 1);
	return state == GRACED_SERVING ? 200 : 503;
}

static void
healthz(struct graced_request *r, void *arg)
{
	struct evbuffer *out =
	    evhttp_request_get_output_buffer(graced_request_evhttp(r));
	int status = health_render(graced_request_server(r), out);

	(void)arg;
	graced_reply(r, status, "application/json", NULL, 0);
}

static void
livez(struct graced_request *r, void *arg)
{
	(void)arg;
	graced_reply_json(r, 200, json_pack("{s:s}", "status", "alive"));
}

static void
metrics(struct graced_request *r, void *arg)
{
	struct evhttp_request *req = graced_request_evhttp(r);

	(void)arg;
	metrics_render(
	    graced_request_server(r), evhttp_request_get_output_buffer(req));
	graced_reply(r, 200, "text/plain; version=0.0.4", NULL, 0);
}

const struct graced_route health_routes[] = {
	{ "GET", "/healthz", healthz },
	{ "GET", "/livez", livez },
	{ "GET", "/metrics", metrics },
};
const size_t health_nroutes = sizeof(health_routes) / sizeof(health_routes[0]);
