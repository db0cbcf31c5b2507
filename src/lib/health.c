/* Health and metrics endpoints, on the public listener (through the router)
 * and on the admin listener (admin.c calls the same bodies). They read the
 * drain and the workers through their accessors, from any thread. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/http.h>

#include "drain.h"
#include "health.h"
#include "listener.h"
#include "log.h"
#include "metrics.h"
#include "util.h"
#include "worker.h"

struct health_hook {
	void *fn; /* graced_status_fn or graced_metrics_fn */
	void *arg;
	const char *name; /* status hooks: the /healthz field */
};

/* Set before start, then only read (from any thread). */
struct health {
	const struct drain *drain;
	struct worker *const *workers;
	unsigned nworkers;
	const struct router *router;
	const struct listener_guard *admin_guard;
	struct health_hook status[HEALTH_MAX_HOOKS];
	struct health_hook metrics[HEALTH_MAX_HOOKS];
	struct health_hook counts[HEALTH_MAX_HOOKS];
	unsigned nstatus, nmetrics, ncounts;
};

struct health *
health_new(const struct drain *d)
{
	struct health *h = calloc(1, sizeof(*h));

	if (h != NULL)
		h->drain = d;
	return h;
}

void
health_free(struct health *h)
{
	free(h);
}

void
health_set_workers(struct health *h, struct worker *const *workers, unsigned n,
    const struct router *router)
{
	h->workers = workers;
	h->nworkers = n;
	h->router = router;
}

void
health_set_admin_guard(struct health *h, const struct listener_guard *guard)
{
	h->admin_guard = guard;
}

int
health_add_status(
    struct health *h, const char *name, graced_status_fn *fn, void *arg)
{
	if (h->nstatus == HEALTH_MAX_HOOKS)
		return -ENOSPC;
	h->status[h->nstatus++] = (struct health_hook){ (void *)fn, arg, name };
	return 0;
}

int
health_add_count(
    struct health *h, const char *name, graced_count_fn *fn, void *arg)
{
	if (h->ncounts == HEALTH_MAX_HOOKS)
		return -ENOSPC;
	h->counts[h->ncounts++] = (struct health_hook){ (void *)fn, arg, name };
	return 0;
}

int
health_add_metrics(struct health *h, graced_metrics_fn *fn, void *arg)
{
	if (h->nmetrics == HEALTH_MAX_HOOKS)
		return -ENOSPC;
	h->metrics[h->nmetrics++] =
	    (struct health_hook){ (void *)fn, arg, NULL };
	return 0;
}

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

/* The application's fields, "name":"word", from its status hooks (and
 * "name":N from its count hooks): each
 * escaped (log.c's JSON escape) into one buffer and added at once. */
static void
put_status_fields(
    const struct health *h, const char **words, struct evbuffer *out)
{
	char buf[256];
	const size_t half = (sizeof(buf) - 6) / 2; /* room for each string */

	for (unsigned i = 0; i < h->nstatus; i++) {
		size_t n = 0;
		buf[n++] = ',';
		buf[n++] = '"';
		n += log_escape(buf + n, half, h->status[i].name,
		    strlen(h->status[i].name));
		memcpy(buf + n, "\":\"", 3);
		n += 3;
		n += log_escape(buf + n, half, words[i], strlen(words[i]));
		buf[n++] = '"';
		evbuffer_add(out, buf, n);
	}
	/* The count hooks' fields, "name":N. */
	for (unsigned i = 0; i < h->ncounts; i++) {
		graced_count_fn *fn = (graced_count_fn *)h->counts[i].fn;
		size_t n = 0;
		buf[n++] = ',';
		buf[n++] = '"';
		n += log_escape(buf + n, half, h->counts[i].name,
		    strlen(h->counts[i].name));
		buf[n++] = '"';
		buf[n++] = ':';
		n = (size_t)(put_u(buf + n, fn(h->counts[i].arg)) - buf);
		evbuffer_add(out, buf, n);
	}
}

int
health_render(const struct health *h, struct evbuffer *out)
{
	enum graced_state state = drain_state(h->drain);
	const char *words[HEALTH_MAX_HOOKS], *status;
	char head[256], *p = head;
	int ready = 1, up;

	for (unsigned i = 0; i < h->nstatus; i++) {
		int r = 1;
		graced_status_fn *fn = (graced_status_fn *)h->status[i].fn;
		words[i] = fn(h->status[i].arg, &r);
		if (words[i] == NULL)
			words[i] = "";
		ready = ready && r;
	}
	/* A generation handing over to its successor stays ready: the port
	 * is the successor's now, and a client still on this one must not
	 * see a failure. */
	up = state == GRACED_SERVING ||
	    (state == GRACED_STOPPING && drain_handing_over(h->drain));

	/* Draining wins over unready: the balancer must see the drain. */
	status = up                  ? (ready ? "ok" : "unready") :
	    state == GRACED_STARTING ? "starting" :
	                               "draining";

	/* Built by hand, not through jansson or printf: this is the endpoint
	 * load balancers hit most, and every value is a number or a word. */
	p = put_s(p, "{\"status\":\"");
	p = put_s(p, status);
	p = put_s(p, "\",\"state\":\"");
	p = put_s(p, graced_state_name(state));
	p = put_s(p, "\",\"connections\":");
	p = put_u(p, drain_connections(h->drain));
	p = put_s(p, ",\"in_flight\":");
	p = put_u(p, drain_in_flight(h->drain));
	p = put_s(p, ",\"workers\":[");
	evbuffer_add(out, head, (size_t)(p - head));
	for (unsigned i = 0; i < h->nworkers; i++) {
		const struct worker *w = h->workers[i];
		p = head;
		p = put_s(p, i ? ",{\"connections\":" : "{\"connections\":");
		p = put_u(p, worker_connections(w));
		p = put_s(p, ",\"in_flight\":");
		p = put_u(p, worker_in_flight(w));
		p = put_s(p, "}");
		evbuffer_add(out, head, (size_t)(p - head));
	}
	p = put_s(head, "]");
	if (state == GRACED_DRAINING) {
		p = put_s(p, ",\"drain_ms_left\":");
		p = put_u(p, drain_ms_left(h->drain));
	}
	evbuffer_add(out, head, (size_t)(p - head));
	put_status_fields(h, words, out);
	evbuffer_add(out, "}", 1);
	return up && ready ? 200 : 503;
}

static void
render_requests(const struct health *h, struct evbuffer *out)
{
	size_t nroutes = h->router->nroutes + 1;

	evbuffer_add_printf(out,
	    "# HELP graced_requests_total Requests answered, by route and "
	    "status (code=\"aborted\": ended without a reply).\n"
	    "# TYPE graced_requests_total counter\n");
	for (size_t r = 0; r < nroutes; r++) {
		const struct graced_route *rt = router_route(h->router, r);
		for (size_t i = 0; i < METRICS_NCODES; i++) {
			uint64_t n = 0;
			char code[16];
			for (unsigned k = 0; k < h->nworkers; k++)
				n += COUNTER_GET(&worker_metrics(h->workers[k])
				                      ->requests[r][i]);
			if (n == 0)
				continue;
			if (i == METRICS_ABORTED)
				snprintf(code, sizeof(code), "aborted");
			else if (i == METRICS_OTHER)
				snprintf(code, sizeof(code), "other");
			else
				snprintf(
				    code, sizeof(code), "%d", metrics_code(i));
			evbuffer_add_printf(out,
			    "graced_requests_total{method="
			    "\"%s\",path=\"%s\",code=\"%s\"} %llu\n",
			    rt ? rt->method : "", rt ? rt->path : "unmatched",
			    code, (unsigned long long)n);
		}
	}
}

/* One route's durations summed over the workers; 0 when it has none. */
static uint64_t
route_durations(const struct health *h, size_t r, struct metrics_hist *sum)
{
	uint64_t n = 0;

	memset(sum, 0, sizeof(*sum));
	for (unsigned k = 0; k < h->nworkers; k++) {
		const struct metrics_hist *d =
		    &worker_metrics(h->workers[k])->durations[r];
		for (size_t b = 0; b < METRICS_NBUCKETS; b++)
			sum->buckets[b] += COUNTER_GET(&d->buckets[b]);
		sum->sum_us += COUNTER_GET(&d->sum_us);
	}
	for (size_t b = 0; b < METRICS_NBUCKETS; b++)
		n += sum->buckets[b];
	return n;
}

/* The request-duration histogram by route, Prometheus style: cumulative
 * buckets, the sum and the count, in seconds. */
static void
render_durations(const struct health *h, struct evbuffer *out)
{
	size_t nroutes = h->router->nroutes + 1;

	evbuffer_add_printf(out,
	    "# HELP graced_request_duration_seconds Time from dispatch to the "
	    "reply's last byte handed to the kernel, by route.\n"
	    "# TYPE graced_request_duration_seconds histogram\n");
	for (size_t r = 0; r < nroutes; r++) {
		const struct graced_route *rt = router_route(h->router, r);
		const char *method = rt ? rt->method : "";
		const char *path = rt ? rt->path : "unmatched";
		struct metrics_hist sum;
		uint64_t n = route_durations(h, r, &sum), below = 0;

		if (n == 0)
			continue;
		for (size_t b = 0; b < METRICS_NBUCKETS - 1; b++) {
			below += sum.buckets[b];
			evbuffer_add_printf(out,
			    "graced_request_duration_seconds_bucket{method="
			    "\"%s\",path=\"%s\",le=\"%g\"} %llu\n",
			    method, path, (double)metrics_bucket_us[b] / 1e6,
			    (unsigned long long)below);
		}
		evbuffer_add_printf(out,
		    "graced_request_duration_seconds_bucket{method=\"%s\","
		    "path=\"%s\",le=\"+Inf\"} %llu\n"
		    "graced_request_duration_seconds_sum{method=\"%s\","
		    "path=\"%s\"} %.6f\n"
		    "graced_request_duration_seconds_count{method=\"%s\","
		    "path=\"%s\"} %llu\n",
		    method, path, (unsigned long long)n, method, path,
		    (double)sum.sum_us / 1e6, method, path,
		    (unsigned long long)n);
	}
}

/* Accept failures by listener and errno; the workers' public listeners are
 * summed. */
static void
render_accept_errors(const struct health *h, struct evbuffer *out)
{
	evbuffer_add_printf(out,
	    "# HELP graced_accept_errors_total Failed accept() calls (each "
	    "pauses the listener briefly).\n"
	    "# TYPE graced_accept_errors_total counter\n");
	for (size_t i = 0; i < LISTENER_NERRNOS; i++) {
		uint64_t n = 0;
		for (unsigned k = 0; k < h->nworkers; k++)
			n += listener_guard_errors(
			    worker_guard(h->workers[k]), i);
		evbuffer_add_printf(out,
		    "graced_accept_errors_total{listener=\"public\","
		    "errno=\"%s\"} %llu\n"
		    "graced_accept_errors_total{listener=\"admin\","
		    "errno=\"%s\"} %llu\n",
		    listener_errno_names[i], (unsigned long long)n,
		    listener_errno_names[i],
		    (unsigned long long)listener_guard_errors(
		        h->admin_guard, i));
	}
}

/* The per-worker figures of /metrics. */
enum {
	HEALTH_IN_FLIGHT,
	HEALTH_CONNECTIONS,
	HEALTH_ACCEPTED,
	HEALTH_CUT_OFF,
};

static unsigned long long
figure(const struct worker *w, int which)
{
	switch (which) {
	case HEALTH_IN_FLIGHT: return worker_in_flight(w);
	case HEALTH_CONNECTIONS: return worker_connections(w);
	case HEALTH_ACCEPTED: return COUNTER_GET(&worker_metrics(w)->accepted);
	default: return COUNTER_GET(&worker_metrics(w)->cut_off);
	}
}

/* One gauge or counter per worker. */
static void
render_per_worker(const struct health *h, struct evbuffer *out,
    const char *name, const char *help, const char *type, int which)
{
	evbuffer_add_printf(
	    out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
	for (unsigned i = 0; i < h->nworkers; i++) {
		unsigned long long v = figure(h->workers[i], which);
		evbuffer_add_printf(
		    out, "%s{worker=\"%u\"} %llu\n", name, i, v);
	}
}

/* The application's own metrics, last. */
static void
render_hooks(const struct health *h, struct evbuffer *out)
{
	for (unsigned i = 0; i < h->nmetrics; i++) {
		graced_metrics_fn *fn = (graced_metrics_fn *)h->metrics[i].fn;
		fn(out, h->metrics[i].arg);
	}
}

/* Requests refused by the framing check (framing.c), every reason listed
 * so that a rate can be taken from zero. */
static void
render_rejected(const struct health *h, struct evbuffer *out)
{
	evbuffer_add_printf(out,
	    "# HELP graced_requests_rejected_total Requests refused for their "
	    "framing or header size, by reason.\n"
	    "# TYPE graced_requests_rejected_total counter\n");
	for (int v = FRAMING_OK + 1; v < FRAMING_NVERDICTS; v++) {
		uint64_t n = 0;
		for (unsigned k = 0; k < h->nworkers; k++)
			n += COUNTER_GET(
			    &worker_metrics(h->workers[k])->rejected[v]);
		evbuffer_add_printf(out,
		    "graced_requests_rejected_total{reason=\"%s\"} %llu\n",
		    framing_reason((enum framing_verdict)v),
		    (unsigned long long)n);
	}
}

void
health_render_metrics(const struct health *h, struct evbuffer *out)
{
	enum graced_state state = drain_state(h->drain);
	uint64_t now = now_ms();
	uint64_t started = drain_since_ms(h->drain, GRACED_SERVING);
	uint64_t drain = drain_since_ms(h->drain, GRACED_DRAINING);
	uint64_t stopping = drain_since_ms(h->drain, GRACED_STOPPING);

	render_requests(h, out);
	render_durations(h, out);
	render_per_worker(h, out, "graced_in_flight_requests",
	    "Requests held by handlers.", "gauge", HEALTH_IN_FLIGHT);
	render_per_worker(h, out, "graced_connections",
	    "Open client connections.", "gauge", HEALTH_CONNECTIONS);
	render_per_worker(h, out, "graced_connections_accepted_total",
	    "Connections accepted.", "counter", HEALTH_ACCEPTED);
	render_per_worker(h, out, "graced_requests_cut_off_total",
	    "Requests cut off at stop.", "counter", HEALTH_CUT_OFF);
	render_accept_errors(h, out);
	evbuffer_add_printf(out,
	    "# HELP graced_state 1 for the state the server is in.\n"
	    "# TYPE graced_state gauge\n");
	for (int s = GRACED_STARTING; s <= GRACED_STOPPED; s++)
		evbuffer_add_printf(out, "graced_state{state=\"%s\"} %d\n",
		    graced_state_name((enum graced_state)s), (int)state == s);
	evbuffer_add_printf(out,
	    "# HELP graced_drain_seconds Time spent in each drain phase so "
	    "far.\n# TYPE graced_drain_seconds gauge\n"
	    "graced_drain_seconds{phase=\"draining\"} %.3f\n"
	    "graced_drain_seconds{phase=\"stopping\"} %.3f\n"
	    "# HELP graced_uptime_seconds Seconds since serving began.\n"
	    "# TYPE graced_uptime_seconds gauge\n"
	    "graced_uptime_seconds %.3f\n",
	    drain == 0 ? 0.0 :
	                 (double)((stopping ? stopping : now) - drain) / 1000.0,
	    stopping == 0 ? 0.0 : (double)(now - stopping) / 1000.0,
	    started ? (double)(now - started) / 1000.0 : 0.0);
	render_rejected(h, out);
	evbuffer_add_printf(out,
	    "# HELP graced_log_lines_dropped_total Log lines dropped because "
	    "the log sink did not keep up (or stalled at stop).\n"
	    "# TYPE graced_log_lines_dropped_total counter\n"
	    "graced_log_lines_dropped_total %llu\n",
	    (unsigned long long)log_dropped());
	render_hooks(h, out);
}

static void
healthz(struct graced_request *r, void *arg)
{
	struct evbuffer *out =
	    evhttp_request_get_output_buffer(graced_request_evhttp(r));
	int status = health_render(arg, out);

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

	health_render_metrics(arg, evhttp_request_get_output_buffer(req));
	graced_reply(r, 200, "text/plain; version=0.0.4", NULL, 0);
}

const struct graced_route health_routes[] = {
	{ "GET", "/healthz", healthz },
	{ "GET", "/livez", livez },
	{ "GET", "/metrics", metrics },
};
const size_t health_nroutes = sizeof(health_routes) / sizeof(health_routes[0]);
