/* The drain state machine, one function per transition:
 *   drain_serving  STARTING -> SERVING   (listeners bound)
 *   drain_begin    SERVING  -> DRAINING  (first signal, admin drain)
 *   drain_stop     DRAINING -> STOPPING  (delay over, second signal)
 *   drain_finish   STOPPING -> STOPPED   (nothing left)
 *   drain_cut_off  any      -> STOPPED   (shutdown timeout, SIGQUIT)
 *   drain_handover SERVING  -> STOPPING  (a successor serves the port)
 * Each transition is logged with the counts that matter. */
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#include <event2/event.h>

#include "drain.h"
#include "log.h"
#include "notify.h"
#include "util.h"
#include "worker.h"

struct drain_hook {
	void *fn; /* graced_drain_fn or graced_stop_fn */
	void *arg;
};

/* Owned by the main loop; the fields marked shared are read anywhere. */
struct drain {
	struct graced_server *srv; /* handed to the hooks */
	const struct graced_config *cfg;
	struct event_base *base; /* the main loop */
	struct worker **workers;
	unsigned nworkers;
	/* Written by the main loop (SHARED_SET), read anywhere (drain_state). */
	enum graced_state state;
	struct drain_hook on_drain[DRAIN_MAX_HOOKS];
	struct drain_hook on_stop[DRAIN_MAX_HOOKS];
	struct drain_hook on_closed[DRAIN_MAX_HOOKS];
	unsigned ndrain_hooks, nstop_hooks, nclosed_hooks;
	int closed_ran;              /* the on_closed hooks ran */
	void (*watch_fn)(void *arg); /* the admin listener's waiters */
	void *watch_arg;
	unsigned holds;           /* replies to flush before the loop ends */
	struct event *delay_ev;   /* drain delay over: DRAINING->STOPPING */
	struct event *timeout_ev; /* shutdown timeout: cut off */
	struct event *grace_ev;   /* first-byte grace over */
	struct event *check_ev;   /* a worker reported progress */
	unsigned drain_requests;  /* drain signals received */
	int close_sent;           /* workers told to close their listeners */
	/* The stop is a handover (drain_handover): /healthz stays ready.
	 * Written by the main loop (SHARED_SET), read anywhere. */
	int handover;
	int cutting;         /* workers told to cut off */
	const char *cut_why; /* ... and why */
	/* Written by the main loop (SHARED_SET), read by /metrics and /healthz
	 * on any thread (SHARED_GET). */
	uint64_t started_ms;  /* SERVING since */
	uint64_t drain_ms;    /* DRAINING since */
	uint64_t stopping_ms; /* STOPPING since */
	uint64_t stopped_ms;  /* STOPPED since */
	uint64_t cut_off;     /* requests cut off at stop (main loop only) */
	int exit_status;
};

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
watchers(struct drain *d)
{
	if (d->watch_fn != NULL)
		d->watch_fn(d->watch_arg);
}

/* Once, when no listener of this process accepts any more. */
static void
run_closed_hooks(struct drain *d)
{
	if (d->closed_ran)
		return;
	d->closed_ran = 1;
	for (unsigned i = 0; i < d->nclosed_hooks; i++)
		((graced_drain_fn *)d->on_closed[i].fn)(
		    d->srv, d->on_closed[i].arg);
}

static void
set_state(struct drain *d, enum graced_state state)
{
	SHARED_SET(&d->state, state);
}

static void
send_all(struct drain *d, unsigned cmds)
{
	for (unsigned i = 0; i < d->nworkers; i++)
		worker_send(d->workers[i], cmds);
}

/* Whether every worker has reported what (WORKER_QUEUE_EMPTY, ...). */
static int
all_workers(const struct drain *d, unsigned what)
{
	for (unsigned i = 0; i < d->nworkers; i++)
		if (!worker_done(d->workers[i], what))
			return 0;
	return 1;
}

int
drain_listeners_closed(const struct drain *d)
{
	return d->state >= GRACED_STOPPING &&
	    all_workers(d, WORKER_LISTENER_CLOSED);
}

/* A count summed over the workers. */
static unsigned
sum(const struct drain *d, unsigned (*count)(const struct worker *))
{
	unsigned n = 0;

	for (unsigned i = 0; i < d->nworkers; i++)
		n += count(d->workers[i]);
	return n;
}

unsigned
drain_connections(const struct drain *d)
{
	return sum(d, worker_connections);
}

unsigned
drain_in_flight(const struct drain *d)
{
	return sum(d, worker_in_flight);
}

static json_t *
counts(const struct drain *d, uint64_t since_ms)
{
	return json_pack("{s:I,s:I,s:I}", "connections",
	    (json_int_t)drain_connections(d), "in_flight",
	    (json_int_t)drain_in_flight(d), "elapsed_ms",
	    (json_int_t)(since_ms ? now_ms() - since_ms : 0));
}

static void
log_transition(struct drain *d, const char *event, const char *key,
    const char *value, uint64_t since_ms)
{
	json_t *fields = counts(d, since_ms);

	json_object_set_new(
	    fields, "state", json_string(graced_state_name(d->state)));
	if (key != NULL)
		json_object_set_new(fields, key, json_string(value));
	log_event(event, fields);
}

void
drain_open(struct drain *d, int open)
{
	set_state(d, open ? GRACED_SERVING : GRACED_STARTING);
	SHARED_SET(&d->started_ms, open ? now_ms() : 0);
}

void
drain_serving(struct drain *d, const char *listen, const char *admin)
{
	if (d->state == GRACED_STARTING)
		drain_open(d, 1);
	log_event("serving",
	    json_pack("{s:s,s:s,s:s,s:I}", "state", "serving", "listen", listen,
	        "admin", admin, "workers", (json_int_t)d->nworkers));
	notify_send("READY=1\nMAINPID=%ld\nSTATUS=serving on %s, admin %s",
	    (long)getpid(), listen, admin);
}

void
drain_begin(struct drain *d, const char *cause)
{
	struct timeval delay = seconds_tv(d->cfg->drain_delay);
	struct timeval timeout = seconds_tv(d->cfg->shutdown_timeout);

	if (d->state != GRACED_SERVING)
		return;
	/* Workers learn of the drain (their "sent" bits) before /healthz can
	 * say "draining": a reply that shows the drain always closes. */
	send_all(d, WORKER_DRAIN);
	SHARED_SET(&d->drain_ms, now_ms());
	set_state(d, GRACED_DRAINING);
	event_add(d->timeout_ev, &timeout);
	log_transition(d, "drain_begin", "cause", cause, 0);
	notify_send("STOPPING=1\nSTATUS=draining (%s)", cause);
	for (unsigned i = 0; i < d->ndrain_hooks; i++)
		((graced_drain_fn *)d->on_drain[i].fn)(
		    d->srv, d->on_drain[i].arg);
	if (d->cfg->drain_delay <= 0)
		drain_stop(d, "no drain delay");
	else
		event_add(d->delay_ev, &delay);
}

void
drain_stop(struct drain *d, const char *why)
{
	struct timeval grace = seconds_tv(d->cfg->first_byte_grace);
	int fresh = d->cfg->first_byte_grace <= 0;

	if (d->state != GRACED_DRAINING)
		return;
	SHARED_SET(&d->stopping_ms, now_ms());
	set_state(d, GRACED_STOPPING);
	event_del(d->delay_ev);
	log_transition(d, "drain_stop", "why", why, d->drain_ms);
	notify_send("STATUS=stopping (%s): %u connections, %u in flight", why,
	    drain_connections(d), drain_in_flight(d));
	/* Every worker empties its queue before any listener closes: with
	 * SO_REUSEPORT, closing one listener resets its own queue. */
	send_all(d,
	    WORKER_STOP_ACCEPT |
	        (fresh ? WORKER_CLOSE_FRESH : WORKER_CLOSE_IDLE));
	if (!fresh)
		event_add(d->grace_ev, &grace);
}

void
drain_handover(struct drain *d, const char *cause)
{
	struct timeval window = seconds_tv(d->cfg->first_byte_grace);
	struct timeval timeout = seconds_tv(d->cfg->shutdown_timeout);
	uint64_t now = now_ms();

	if (d->state != GRACED_SERVING)
		return;
	/* The port is shared with the successor, which already accepts: no
	 * readiness flip and no delay. Replies close from now on, each
	 * listener closes without touching the socket, and the keep-alive
	 * connections get the window to send one more request. */
	SHARED_SET(&d->handover, 1);
	send_all(d, WORKER_DRAIN | WORKER_HAND_OVER | WORKER_STOP_ACCEPT);
	SHARED_SET(&d->drain_ms, now);
	SHARED_SET(&d->stopping_ms, now);
	set_state(d, GRACED_STOPPING);
	event_add(d->timeout_ev, &timeout);
	log_transition(d, "handover", "cause", cause, 0);
	for (unsigned i = 0; i < d->ndrain_hooks; i++)
		((graced_drain_fn *)d->on_drain[i].fn)(
		    d->srv, d->on_drain[i].arg);
	event_add(d->grace_ev, &window);
}

int
drain_handing_over(const struct drain *d)
{
	return SHARED_GET(&d->handover);
}

/* The one place the main loop ends, once STOPPED. What is held (the
 * "drain --wait" replies) goes out first: drain_release calls this again
 * when the last hold goes, and the first call bounds the wait to 1 s. */
static void
drain_end_loop(struct drain *d)
{
	struct timeval bound = { 1, 0 };

	event_base_loopexit(d->base, d->holds == 0 ? NULL : &bound);
}

static void
drain_finish(struct drain *d)
{
	uint64_t deadline =
	    d->drain_ms + (uint64_t)(d->cfg->shutdown_timeout * 1000);
	uint64_t now = now_ms();
	double left = d->cfg->shutdown_timeout;

	if (d->drain_ms != 0)
		left = now < deadline ? (double)(deadline - now) / 1000.0 : 0;
	SHARED_SET(&d->stopped_ms, now);
	set_state(d, GRACED_STOPPED);
	event_del(d->delay_ev);
	event_del(d->timeout_ev);
	event_del(d->grace_ev);
	watchers(d);
	run_closed_hooks(d);
	for (unsigned i = 0; i < d->nstop_hooks; i++)
		((graced_stop_fn *)d->on_stop[i].fn)(
		    d->srv, left, d->on_stop[i].arg);
	log_event("stopped",
	    json_pack("{s:s,s:I,s:I,s:I,s:i}", "state", "stopped", "drain_ms",
	        (json_int_t)(d->drain_ms ? now - d->drain_ms : 0),
	        "stopping_ms",
	        (json_int_t)(d->stopping_ms ? now - d->stopping_ms : 0),
	        "cut_off", (json_int_t)d->cut_off, "exit", d->exit_status));
	drain_end_loop(d);
}

static void
finish_cut_off(struct drain *d)
{
	uint64_t cut = 0;

	for (unsigned i = 0; i < d->nworkers; i++)
		cut += COUNTER_GET(&worker_metrics(d->workers[i])->cut_off);
	d->cut_off = cut;
	if (cut > 0)
		d->exit_status = 1;
	log_event("cut_off",
	    json_pack(
	        "{s:s,s:I}", "why", d->cut_why, "requests", (json_int_t)cut));
	drain_finish(d);
}

static void
drain_check(struct drain *d)
{
	if (d->state != GRACED_STOPPING)
		return;
	if (d->cutting) {
		if (all_workers(d, WORKER_CUT_DONE))
			finish_cut_off(d);
		return;
	}
	if (!d->close_sent && all_workers(d, WORKER_QUEUE_EMPTY)) {
		d->close_sent = 1;
		send_all(d, WORKER_CLOSE_LISTENER);
	}
	if (!drain_listeners_closed(d))
		return;
	watchers(d);
	run_closed_hooks(d);
	if (drain_connections(d) > 0)
		return;
	drain_finish(d);
}

void
drain_cut_off(struct drain *d, const char *why)
{
	if (d->state == GRACED_STOPPED || d->cutting)
		return;
	if (d->state < GRACED_STOPPING) {
		/* SIGQUIT while serving: no drain_begin told the manager. */
		notify_send("%sSTATUS=stopping now (%s)",
		    d->state == GRACED_SERVING ? "STOPPING=1\n" : "", why);
		SHARED_SET(&d->stopping_ms, now_ms());
		set_state(d, GRACED_STOPPING);
	}
	d->cutting = 1;
	d->cut_why = why;
	send_all(d, WORKER_CUT_OFF);
}

uint64_t
drain_ms_left(const struct drain *d)
{
	uint64_t end =
	    SHARED_GET(&d->drain_ms) + (uint64_t)(d->cfg->drain_delay * 1000);
	uint64_t now = now_ms();

	if (drain_state(d) != GRACED_DRAINING || now >= end)
		return 0;
	return end - now;
}

void
drain_signal(struct drain *d, const char *cause)
{
	d->drain_requests++;
	if (d->state == GRACED_SERVING)
		drain_begin(d, cause);
	else if (d->state == GRACED_DRAINING && d->drain_requests > 1)
		drain_stop(d, cause);
}

enum graced_state
drain_state(const struct drain *d)
{
	return SHARED_GET(&d->state);
}

uint64_t
drain_since_ms(const struct drain *d, enum graced_state state)
{
	switch (state) {
	case GRACED_SERVING: return SHARED_GET(&d->started_ms);
	case GRACED_DRAINING: return SHARED_GET(&d->drain_ms);
	case GRACED_STOPPING: return SHARED_GET(&d->stopping_ms);
	case GRACED_STOPPED: return SHARED_GET(&d->stopped_ms);
	default: return 0;
	}
}

int
drain_exit_status(const struct drain *d)
{
	return d->exit_status;
}

void
drain_wake(struct drain *d)
{
	event_active(d->check_ev, EV_TIMEOUT, 0);
}

void
drain_watch(struct drain *d, void (*fn)(void *arg), void *arg)
{
	d->watch_fn = fn;
	d->watch_arg = arg;
}

void
drain_hold(struct drain *d)
{
	d->holds++;
}

void
drain_release(struct drain *d)
{
	if (--d->holds == 0 && d->state == GRACED_STOPPED)
		drain_end_loop(d);
}

static int
hook_add(struct drain_hook *hooks, unsigned *n, void *fn, void *arg)
{
	if (*n == DRAIN_MAX_HOOKS)
		return -ENOSPC;
	hooks[*n].fn = fn;
	hooks[*n].arg = arg;
	(*n)++;
	return 0;
}

int
drain_on_drain(struct drain *d, graced_drain_fn *fn, void *arg)
{
	return hook_add(d->on_drain, &d->ndrain_hooks, (void *)fn, arg);
}

int
drain_on_stop(struct drain *d, graced_stop_fn *fn, void *arg)
{
	return hook_add(d->on_stop, &d->nstop_hooks, (void *)fn, arg);
}

int
drain_on_closed(struct drain *d, graced_drain_fn *fn, void *arg)
{
	return hook_add(d->on_closed, &d->nclosed_hooks, (void *)fn, arg);
}

void
drain_set_workers(struct drain *d, struct worker **workers, unsigned n)
{
	d->workers = workers;
	d->nworkers = n;
}

static void
delay_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	drain_stop(arg, "drain delay over");
}

static void
timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	drain_cut_off(arg, "shutdown timeout");
}

static void
grace_cb(evutil_socket_t fd, short what, void *arg)
{
	struct drain *d = arg;

	(void)fd;
	(void)what;
	send_all(d, WORKER_CLOSE_FRESH | (d->handover ? WORKER_CLOSE_IDLE : 0));
}

static void
check_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	drain_check(arg);
}

struct drain *
drain_new(struct graced_server *srv, const struct graced_config *cfg,
    struct event_base *base)
{
	struct drain *d = calloc(1, sizeof(*d));

	if (d == NULL)
		return NULL;
	d->srv = srv;
	d->cfg = cfg;
	d->base = base;
	d->delay_ev = evtimer_new(base, delay_cb, d);
	d->timeout_ev = evtimer_new(base, timeout_cb, d);
	d->grace_ev = evtimer_new(base, grace_cb, d);
	d->check_ev = event_new(base, -1, 0, check_cb, d);
	if (d->delay_ev == NULL || d->timeout_ev == NULL ||
	    d->grace_ev == NULL || d->check_ev == NULL) {
		drain_free(d);
		return NULL;
	}
	return d;
}

void
drain_free(struct drain *d)
{
	if (d == NULL)
		return;
	if (d->delay_ev)
		event_free(d->delay_ev);
	if (d->timeout_ev)
		event_free(d->timeout_ev);
	if (d->grace_ev)
		event_free(d->grace_ev);
	if (d->check_ev)
		event_free(d->check_ev);
	free(d);
}
