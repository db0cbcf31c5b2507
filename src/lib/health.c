/* Health and metrics endpoints, on the public listener (through the router)
 * and on the admin listener (admin.c calls the same bodies). */
#include <event2/buffer.h>
#include <event2/http.h>

#include "health.h"
#include "metrics.h"
#include "server.h"
#include "util.h"
#include "worker.h"

json_t *
health_body(struct graced_server *srv, int *status)
{
	enum graced_state state = server_state(srv);
	json_t *body, *workers = json_array();

	*status = state == GRACED_SERVING ? 200 : 503;
	for (unsigned i = 0; i < srv->nworkers; i++) {
		const struct worker *w = srv->workers[i];
		json_array_append_new(workers,
		    json_pack("{s:I,s:I}", "connections",
		        (json_int_t)COUNTER_GET(&w->nconns), "in_flight",
		        (json_int_t)COUNTER_GET(&w->in_flight)));
	}
	body = json_pack("{s:s,s:s,s:I,s:I,s:o}", "status",
	    state == GRACED_SERVING      ? "ok" :
	        state == GRACED_STARTING ? "starting" :
	                                   "draining",
	    "state", graced_state_name(state), "connections",
	    (json_int_t)server_connections(srv), "in_flight",
	    (json_int_t)server_in_flight(srv), "workers", workers);
	if (body != NULL && state == GRACED_DRAINING)
		json_object_set_new(body, "drain_ms_left",
		    json_integer((json_int_t)drain_ms_left(srv)));
	return body;
}

static void
healthz(struct graced_request *r, void *arg)
{
	int status;
	json_t *body = health_body(graced_request_server(r), &status);

	(void)arg;
	graced_reply_json(r, status, body);
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
