/* Health and metrics endpoints, on the public listener (through the router)
 * and on the admin listener (admin.c calls the same bodies). */
#include <string.h>

#include <event2/buffer.h>
#include <event2/http.h>

#include "health.h"
#include "metrics.h"
#include "server.h"
#include "util.h"
#include "worker.h"

/* Appends the decimal digits of v at p; returns the end. */
static char *
put_u(char *p, unsigned long long v)
{
	char digits[24];
	int n = 0;

	do
		digits[n++] = (char)('0' + v % 10);
	while ((v /= 10) > 0);
	while (n > 0)
		*p++ = digits[--n];
	return p;
}

static char *
put_s(char *p, const char *s)
{
	size_t len = strlen(s);

	memcpy(p, s, len);
	return p + len;
}

/* Appends s, escaped, as the inside of a JSON string. */
static void
put_json_chars(struct evbuffer *out, const char *s)
{
	static const char special[] = "\"\\\x01\x02\x03\x04\x05\x06\x07"
	                              "\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f\x10"
	                              "\x11\x12\x13\x14\x15\x16\x17\x18\x19"
	                              "\x1a\x1b\x1c\x1d\x1e\x1f";

	while (*s != '\0') {
		size_t n = strcspn(s, special);
		evbuffer_add(out, s, n);
		s += n;
		if (*s == '"' || *s == '\\')
			evbuffer_add_printf(out, "\\%c", *s++);
		else if (*s != '\0')
			evbuffer_add_printf(out, "\\u%04x", (unsigned)*s++);
	}
}

/* The application's fields, "name":"word", from its status hooks. */
static void
put_status_fields(
    struct graced_server *srv, const char **words, struct evbuffer *out)
{
	for (unsigned i = 0; i < srv->nstatus; i++) {
		evbuffer_add(out, ",\"", 2);
		put_json_chars(out, srv->status[i].name);
		evbuffer_add(out, "\":\"", 3);
		put_json_chars(out, words[i]);
		evbuffer_add(out, "\"", 1);
	}
}

int
health_render(struct graced_server *srv, struct evbuffer *out)
{
	enum graced_state state = server_state(srv);
	const char *words[SERVER_MAX_HOOKS], *status;
	char head[256], *p = head;
	int ready = 1;

	for (unsigned i = 0; i < srv->nstatus; i++) {
		int r = 1;
		graced_status_fn *fn = (graced_status_fn *)srv->status[i].fn;
		words[i] = fn(srv->status[i].arg, &r);
		if (words[i] == NULL)
			words[i] = "";
		ready = ready && r;
	}
	/* Draining wins over unready: the balancer must see the drain. */
	status = state == GRACED_SERVING ? (ready ? "ok" : "unready") :
	    state == GRACED_STARTING     ? "starting" :
	                                   "draining";

	/* Built by hand, not through jansson or printf: this is the endpoint
	 * load balancers hit most, and every value is a number or a word. */
	p = put_s(p, "{\"status\":\"");
	p = put_s(p, status);
	p = put_s(p, "\",\"state\":\"");
	p = put_s(p, graced_state_name(state));
	p = put_s(p, "\",\"connections\":");
	p = put_u(p, server_connections(srv));
	p = put_s(p, ",\"in_flight\":");
	p = put_u(p, server_in_flight(srv));
	p = put_s(p, ",\"workers\":[");
	evbuffer_add(out, head, (size_t)(p - head));
	for (unsigned i = 0; i < srv->nworkers; i++) {
		const struct worker *w = srv->workers[i];
		p = head;
		p = put_s(p, i ? ",{\"connections\":" : "{\"connections\":");
		p = put_u(p, COUNTER_GET(&w->nconns));
		p = put_s(p, ",\"in_flight\":");
		p = put_u(p, COUNTER_GET(&w->in_flight));
		p = put_s(p, "}");
		evbuffer_add(out, head, (size_t)(p - head));
	}
	p = put_s(head, "]");
	if (state == GRACED_DRAINING) {
		p = put_s(p, ",\"drain_ms_left\":");
		p = put_u(p, drain_ms_left(srv));
	}
	evbuffer_add(out, head, (size_t)(p - head));
	put_status_fields(srv, words, out);
	evbuffer_add(out, "}", 1);
	return state == GRACED_SERVING && ready ? 200 : 503;
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
