/* Counters are plain per-worker arrays, written only by their worker's loop
 * and summed when /metrics is read. */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>

#include "admin.h"
#include "graced.h"
#include "listener.h"
#include "log.h"
#include "metrics.h"
#include "router.h"
#include "server.h"
#include "util.h"
#include "worker.h"

static const int codes[METRICS_OTHER] = {
	200,
	201,
	202,
	204,
	301,
	302,
	304,
	400,
	401,
	403,
	404,
	405,
	408,
	413,
	429,
	500,
	502,
	503,
};

int
metrics_init(struct metrics *m, size_t nroutes)
{
	m->requests = calloc(nroutes, sizeof(*m->requests));
	m->nroutes = nroutes;
	return m->requests == NULL ? -ENOMEM : 0;
}

void
metrics_free(struct metrics *m)
{
	free(m->requests);
	m->requests = NULL;
}

void
metrics_count(struct metrics *m, size_t route, int status)
{
	size_t i = METRICS_OTHER;

	if (route >= m->nroutes)
		return;
	if (status == 0)
		i = METRICS_ABORTED;
	for (size_t k = 0; k < METRICS_OTHER && status != 0; k++)
		if (codes[k] == status) {
			i = k;
			break;
		}
	COUNTER_ADD(&m->requests[route][i], 1);
}

static void
render_requests(struct graced_server *srv, struct evbuffer *out)
{
	size_t nroutes = srv->router.nroutes + 1;

	evbuffer_add_printf(out,
	    "# HELP graced_requests_total Requests answered, by route and "
	    "status (code=\"aborted\": ended without a reply).\n"
	    "# TYPE graced_requests_total counter\n");
	for (size_t r = 0; r < nroutes; r++) {
		const struct graced_route *rt = router_route(&srv->router, r);
		for (size_t i = 0; i < METRICS_NCODES; i++) {
			uint64_t n = 0;
			char code[16];
			for (unsigned k = 0; k < srv->nworkers; k++)
				n += COUNTER_GET(
				    &srv->workers[k]->metrics.requests[r][i]);
			if (n == 0)
				continue;
			if (i == METRICS_ABORTED)
				snprintf(code, sizeof(code), "aborted");
			else if (i == METRICS_OTHER)
				snprintf(code, sizeof(code), "other");
			else
				snprintf(code, sizeof(code), "%d", codes[i]);
			evbuffer_add_printf(out,
			    "graced_requests_total{method="
			    "\"%s\",path=\"%s\",code=\"%s\"} %llu\n",
			    rt ? rt->method : "", rt ? rt->path : "unmatched",
			    code, (unsigned long long)n);
		}
	}
}

/* Accept failures by listener and errno; the workers' public listeners are
 * summed. */
static void
render_accept_errors(struct graced_server *srv, struct evbuffer *out)
{
	evbuffer_add_printf(out,
	    "# HELP graced_accept_errors_total Failed accept() calls (each "
	    "pauses the listener briefly).\n"
	    "# TYPE graced_accept_errors_total counter\n");
	for (size_t i = 0; i < LISTENER_NERRNOS; i++) {
		uint64_t n = 0;
		for (unsigned k = 0; k < srv->nworkers; k++)
			n += listener_guard_errors(srv->workers[k]->guard, i);
		evbuffer_add_printf(out,
		    "graced_accept_errors_total{listener=\"public\","
		    "errno=\"%s\"} %llu\n"
		    "graced_accept_errors_total{listener=\"admin\","
		    "errno=\"%s\"} %llu\n",
		    listener_errno_names[i], (unsigned long long)n,
		    listener_errno_names[i],
		    (unsigned long long)listener_guard_errors(
		        admin_guard(srv->admin), i));
	}
}

/* One gauge or counter per worker, read from the field at offset off. */
static void
render_per_worker(struct graced_server *srv, struct evbuffer *out,
    const char *name, const char *help, const char *type, size_t off, int wide)
{
	evbuffer_add_printf(
	    out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
	for (unsigned i = 0; i < srv->nworkers; i++) {
		const char *field = (const char *)srv->workers[i] + off;
		unsigned long long v = wide ?
		    COUNTER_GET((const uint64_t *)field) :
		    COUNTER_GET((const unsigned *)field);
		evbuffer_add_printf(
		    out, "%s{worker=\"%u\"} %llu\n", name, i, v);
	}
}

/* The application's own metrics, last. */
static void
render_hooks(struct graced_server *srv, struct evbuffer *out)
{
	for (unsigned i = 0; i < srv->nmetrics; i++) {
		graced_metrics_fn *fn = (graced_metrics_fn *)srv->metrics[i].fn;
		fn(out, srv->metrics[i].arg);
	}
}

/* Requests refused by the framing check (framing.c), every reason listed
 * so that a rate can be taken from zero. */
static void
render_rejected(struct graced_server *srv, struct evbuffer *out)
{
	evbuffer_add_printf(out,
	    "# HELP graced_requests_rejected_total Requests refused for their "
	    "framing or header size, by reason.\n"
	    "# TYPE graced_requests_rejected_total counter\n");
	for (int v = FRAMING_OK + 1; v < FRAMING_NVERDICTS; v++) {
		uint64_t n = 0;
		for (unsigned k = 0; k < srv->nworkers; k++)
			n += COUNTER_GET(&srv->workers[k]->metrics.rejected[v]);
		evbuffer_add_printf(out,
		    "graced_requests_rejected_total{reason=\"%s\"} %llu\n",
		    framing_reason((enum framing_verdict)v),
		    (unsigned long long)n);
	}
}

void
metrics_render(struct graced_server *srv, struct evbuffer *out)
{
	enum graced_state state = server_state(srv);
	uint64_t now = now_ms();
	/* Set by the main loop; this may run on a worker's thread. */
	uint64_t started = SHARED_GET(&srv->started_ms);
	uint64_t drain = SHARED_GET(&srv->drain_ms);
	uint64_t stopping = SHARED_GET(&srv->stopping_ms);

	render_requests(srv, out);
	render_per_worker(srv, out, "graced_in_flight_requests",
	    "Requests held by handlers.", "gauge",
	    offsetof(struct worker, in_flight), 0);
	render_per_worker(srv, out, "graced_connections",
	    "Open client connections.", "gauge",
	    offsetof(struct worker, nconns), 0);
	render_per_worker(srv, out, "graced_connections_accepted_total",
	    "Connections accepted.", "counter",
	    offsetof(struct worker, metrics.accepted), 1);
	render_per_worker(srv, out, "graced_requests_cut_off_total",
	    "Requests cut off at stop.", "counter",
	    offsetof(struct worker, metrics.cut_off), 1);
	render_accept_errors(srv, out);
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
	render_rejected(srv, out);
	evbuffer_add_printf(out,
	    "# HELP graced_log_lines_dropped_total Log lines dropped because "
	    "the log sink did not keep up (or stalled at stop).\n"
	    "# TYPE graced_log_lines_dropped_total counter\n"
	    "graced_log_lines_dropped_total %llu\n",
	    (unsigned long long)log_dropped());
	render_hooks(srv, out);
}
