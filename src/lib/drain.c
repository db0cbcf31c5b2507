/* The drain state machine, one function per transition:
 *   drain_serving  STARTING -> SERVING   (listeners bound)
 *   drain_begin    SERVING  -> DRAINING  (first signal, admin drain)
 *   drain_stop     DRAINING -> STOPPING  (delay over, second signal)
 *   drain_finish   STOPPING -> STOPPED   (nothing left)
 *   drain_cut_off  any      -> STOPPED   (shutdown timeout, SIGQUIT)
 * Each transition is logged with the counts that matter. */
#include <stddef.h>

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

static void
set_state(struct graced_server *srv, enum graced_state state)
{
	SHARED_SET(&srv->state, state);
}

static void
send_all(struct graced_server *srv, unsigned cmds)
{
	for (unsigned i = 0; i < srv->nworkers; i++)
		worker_send(srv->workers[i], cmds);
}

/* Whether every worker has the flag at offset off set. */
static int
all_workers(struct graced_server *srv, size_t off)
{
	for (unsigned i = 0; i < srv->nworkers; i++)
		if (!SHARED_GET((int *)((char *)srv->workers[i] + off)))
			return 0;
	return 1;
}

int
drain_listeners_closed(struct graced_server *srv)
{
	return srv->state >= GRACED_STOPPING &&
	    all_workers(srv, offsetof(struct worker, listener_closed));
}

static json_t *
counts(struct graced_server *srv, uint64_t since_ms)
{
	return json_pack("{s:I,s:I,s:I}", "connections",
	    (json_int_t)server_connections(srv), "in_flight",
	    (json_int_t)server_in_flight(srv), "elapsed_ms",
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
	set_state(srv, GRACED_SERVING);
	SHARED_SET(&srv->started_ms, now_ms());
	log_event("serving",
	    json_pack("{s:s,s:s,s:s,s:I}", "state", "serving", "listen",
	        srv->address[0], "admin", srv->address[1], "workers",
	        (json_int_t)srv->nworkers));
}

void
drain_begin(struct graced_server *srv, const char *cause)
{
	struct timeval delay = seconds_tv(srv->cfg.drain_delay);
	struct timeval timeout = seconds_tv(srv->cfg.shutdown_timeout);

	if (srv->state != GRACED_SERVING)
		return;
	SHARED_SET(&srv->drain_ms, now_ms());
	set_state(srv, GRACED_DRAINING);
	event_add(srv->timeout_ev, &timeout);
	log_transition(srv, "drain_begin", "cause", cause, 0);
	send_all(srv, WORKER_DRAIN);
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
	int fresh = srv->cfg.first_byte_grace <= 0;

	if (srv->state != GRACED_DRAINING)
		return;
	SHARED_SET(&srv->stopping_ms, now_ms());
	set_state(srv, GRACED_STOPPING);
	event_del(srv->delay_ev);
	log_transition(srv, "drain_stop", "why", why, srv->drain_ms);
	/* Every worker empties its queue before any listener closes: with
	 * SO_REUSEPORT, closing one listener resets its own queue. */
	send_all(srv,
	    WORKER_STOP_ACCEPT |
	        (fresh ? WORKER_CLOSE_FRESH : WORKER_CLOSE_IDLE));
	if (!fresh)
		event_add(srv->grace_ev, &grace);
}

static void
drain_finish(struct graced_server *srv)
{
	uint64_t deadline =
	    srv->drain_ms + (uint64_t)(srv->cfg.shutdown_timeout * 1000);
	uint64_t now = now_ms();
	double left = srv->cfg.shutdown_timeout;

	if (srv->drain_ms != 0)
		left = now < deadline ? (double)(deadline - now) / 1000.0 : 0;
	srv->stopped_ms = now;
	set_state(srv, GRACED_STOPPED);
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
	/* The "drain --wait" replies go out first; admin.c ends the loop
	 * when they have, and this bounds the wait. */
	if (admin_sending(srv->admin) == 0) {
		event_base_loopexit(srv->base, NULL);
	} else {
		struct timeval bound = { 1, 0 };
		event_base_loopexit(srv->base, &bound);
	}
}

static void
finish_cut_off(struct graced_server *srv)
{
	uint64_t cut = 0;

	for (unsigned i = 0; i < srv->nworkers; i++)
		cut += COUNTER_GET(&srv->workers[i]->metrics.cut_off);
	srv->cut_off = cut;
	if (cut > 0)
		srv->exit_status = 1;
	log_event("cut_off",
	    json_pack(
	        "{s:s,s:I}", "why", srv->cut_why, "requests", (json_int_t)cut));
	drain_finish(srv);
}

void
drain_check(struct graced_server *srv)
{
	if (srv->state != GRACED_STOPPING)
		return;
	if (srv->cutting) {
		if (all_workers(srv, offsetof(struct worker, cut_done)))
			finish_cut_off(srv);
		return;
	}
	if (!srv->close_sent &&
	    all_workers(srv, offsetof(struct worker, queue_empty))) {
		srv->close_sent = 1;
		send_all(srv, WORKER_CLOSE_LISTENER);
	}
	if (!drain_listeners_closed(srv))
		return;
	admin_release(srv->admin);
	if (server_connections(srv) > 0)
		return;
	drain_finish(srv);
}

void
drain_cut_off(struct graced_server *srv, const char *why)
{
	if (srv->state == GRACED_STOPPED || srv->cutting)
		return;
	if (srv->state < GRACED_STOPPING) {
		SHARED_SET(&srv->stopping_ms, now_ms());
		set_state(srv, GRACED_STOPPING);
	}
	srv->cutting = 1;
	srv->cut_why = why;
	send_all(srv, WORKER_CUT_OFF);
}

uint64_t
drain_ms_left(const struct graced_server *srv)
{
	uint64_t end = SHARED_GET(&srv->drain_ms) +
	    (uint64_t)(srv->cfg.drain_delay * 1000);
	uint64_t now = now_ms();

	if (server_state(srv) != GRACED_DRAINING || now >= end)
		return 0;
	return end - now;
}
