/* The drain state machine, one function per transition:
 *   drain_serving  STARTING -> SERVING   (listeners bound)
 *   drain_begin    SERVING  -> DRAINING  (first signal, admin drain)
 *   drain_stop     DRAINING -> STOPPING  (delay over, second signal)
 *   drain_finish   STOPPING -> STOPPED   (nothing left)
 *   drain_cut_off  any      -> STOPPED   (shutdown timeout, SIGQUIT)
 * Each transition is logged with the counts that matter. */
#include <event2/event.h>

#include "admin.h"
#include "log.h"
#include "server.h"
#include "util.h"
#include "worker.h"

static const char *const state_names[] = {
	"starting",
	"serving",
	"draining",
	"stopping",
	"stopped",
};

const char *
graced_state_name(enum graced_state state)
{
	if ((unsigned)state >= sizeof(state_names) / sizeof(state_names[0]))
		return "unknown";
	return state_names[state];
}

static json_t *
counts(struct graced_server *srv, uint64_t since_ms)
{
	return json_pack("{s:I,s:I,s:I}", "connections",
	    (json_int_t)srv->worker->nconns, "in_flight",
	    (json_int_t)srv->worker->in_flight, "elapsed_ms",
	    (json_int_t)(since_ms ? now_ms() - since_ms : 0));
}

static void
log_transition(struct graced_server *srv, const char *event, const char *key,
    const char *value, uint64_t since_ms)
{
	json_t *fields = counts(srv, since_ms);

	json_object_set_new(
	    fields, "state", json_string(graced_state_name(srv->state)));
	if (key != NULL)
		json_object_set_new(fields, key, json_string(value));
	log_event(event, fields);
}

void
drain_serving(struct graced_server *srv)
{
	srv->state = GRACED_SERVING;
	srv->started_ms = now_ms();
	log_event("serving",
	    json_pack("{s:s,s:s,s:s,s:I}", "state", "serving", "listen",
	        srv->address[0], "admin", srv->address[1], "workers",
	        (json_int_t)srv->cfg.workers));
}

void
drain_begin(struct graced_server *srv, const char *cause)
{
	struct timeval delay = seconds_tv(srv->cfg.drain_delay);
	struct timeval timeout = seconds_tv(srv->cfg.shutdown_timeout);

	if (srv->state != GRACED_SERVING)
		return;
	srv->state = GRACED_DRAINING;
	srv->drain_ms = now_ms();
	event_add(srv->timeout_ev, &timeout);
	log_transition(srv, "drain_begin", "cause", cause, 0);
	worker_drain_begin(srv->worker);
	for (unsigned i = 0; i < srv->ndrain_hooks; i++)
		((graced_drain_fn *)srv->on_drain[i].fn)(
		    srv, srv->on_drain[i].arg);
	if (srv->cfg.drain_delay <= 0)
		drain_stop(srv, "no drain delay");
	else
		event_add(srv->delay_ev, &delay);
}

void
drain_stop(struct graced_server *srv, const char *why)
{
	struct timeval grace = seconds_tv(srv->cfg.first_byte_grace);

	if (srv->state != GRACED_DRAINING)
		return;
	srv->state = GRACED_STOPPING;
	srv->stopping_ms = now_ms();
	event_del(srv->delay_ev);
	log_transition(srv, "drain_stop", "why", why, srv->drain_ms);
	worker_stop_listening(srv->worker);
	worker_close_idle(srv->worker, srv->cfg.first_byte_grace <= 0);
	if (srv->cfg.first_byte_grace > 0)
		event_add(srv->grace_ev, &grace);
	drain_check(srv);
}

static void
drain_finish(struct graced_server *srv)
{
	uint64_t deadline =
	    srv->drain_ms + (uint64_t)(srv->cfg.shutdown_timeout * 1000);
	uint64_t now = now_ms();
	double left = srv->drain_ms == 0 ? srv->cfg.shutdown_timeout :
	    now < deadline               ? (double)(deadline - now) / 1000.0 :
	                                   0;

	srv->state = GRACED_STOPPED;
	srv->stopped_ms = now;
	event_del(srv->delay_ev);
	event_del(srv->timeout_ev);
	event_del(srv->grace_ev);
	admin_release(srv->admin);
	for (unsigned i = 0; i < srv->nstop_hooks; i++)
		((graced_stop_fn *)srv->on_stop[i].fn)(
		    srv, left, srv->on_stop[i].arg);
	log_event("stopped",
	    json_pack("{s:s,s:I,s:I,s:I,s:i}", "state", "stopped", "drain_ms",
	        (json_int_t)(srv->drain_ms ? now - srv->drain_ms : 0),
	        "stopping_ms",
	        (json_int_t)(srv->stopping_ms ? now - srv->stopping_ms : 0),
	        "cut_off", (json_int_t)srv->cut_off, "exit", srv->exit_status));
	event_base_loopexit(srv->base, NULL);
}

void
drain_check(struct graced_server *srv)
{
	struct worker *w = srv->worker;

	if (srv->state != GRACED_STOPPING || srv->cutting)
		return;
	if (w->lfd >= 0)
		return;
	admin_release(srv->admin);
	if (w->nconns > 0 || w->new_head != NULL)
		return;
	drain_finish(srv);
}

void
drain_cut_off(struct graced_server *srv, const char *why)
{
	unsigned cut;

	if (srv->state == GRACED_STOPPED)
		return;
	if (srv->state < GRACED_STOPPING) {
		srv->state = GRACED_STOPPING;
		srv->stopping_ms = now_ms();
	}
	srv->cutting = 1;
	cut = worker_cut_off(srv->worker);
	srv->cutting = 0;
	srv->cut_off += cut;
	if (cut > 0)
		srv->exit_status = 1;
	log_event("cut_off",
	    json_pack("{s:s,s:I}", "why", why, "requests", (json_int_t)cut));
	drain_finish(srv);
}

uint64_t
drain_ms_left(const struct graced_server *srv)
{
	uint64_t end = srv->drain_ms + (uint64_t)(srv->cfg.drain_delay * 1000);
	uint64_t now = now_ms();

	if (srv->state != GRACED_DRAINING || now >= end)
		return 0;
	return end - now;
}
