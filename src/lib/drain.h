/* The drain state machine of one server: the state, its timers, the
 * drain and stop hooks, and the one place the main loop ends. Everything
 * here runs on the main loop unless it says "any thread". */
#ifndef GRACED_DRAIN_H
#define GRACED_DRAIN_H

#include <stdint.h>
#include <event2/event.h>

#include "graced.h"
#include "config.h"

struct drain;
struct worker;

/* A drain on the main loop base, in STARTING. cfg is kept by pointer; srv
 * is only handed to the hooks. NULL without memory. */
struct drain *drain_new(struct graced_server *srv,
    const struct graced_config *cfg, struct event_base *base);
void drain_free(struct drain *d);
/* The workers whose listeners and connections it drains (or NULL, 0); the
 * array is the caller's and must outlive the drain's use of it. */
void drain_set_workers(struct drain *d, struct worker **workers, unsigned n);
/* Hooks (graced.h): 0 or -ENOSPC past DRAIN_MAX_HOOKS. */
#define DRAIN_MAX_HOOKS 8
int drain_on_drain(struct drain *d, graced_drain_fn *fn, void *arg);
int drain_on_stop(struct drain *d, graced_stop_fn *fn, void *arg);
int drain_on_closed(struct drain *d, graced_drain_fn *fn, void *arg);
/* One watcher is told when the drain may have progressed: once the
 * listeners are closed and at STOPPED (fn NULL: none). The admin listener
 * answers its "drain --wait" requests from it. */
void drain_watch(struct drain *d, void (*fn)(void *arg), void *arg);
/* A hold keeps the loop running after STOPPED, for at most one second, until
 * as many releases: for replies that must be flushed first. */
void drain_hold(struct drain *d);
void drain_release(struct drain *d);

/* STARTING -> SERVING before the worker threads start accepting (so that
 * their first /healthz already answers 200), and back (open 0) if the start
 * fails after all. */
void drain_open(struct drain *d, int open);
/* The transitions (see drain.c). addresses are the bound public and admin
 * addresses, for the "serving" line. */
void drain_serving(struct drain *d, const char *listen, const char *admin);
void drain_begin(struct drain *d, const char *cause);
void drain_stop(struct drain *d, const char *why);
void drain_cut_off(struct drain *d, const char *why);
/* A handover (graced_server_handover): SERVING -> STOPPING at once, with
 * the listeners closed as shared sockets, /healthz still ready, and idle
 * keep-alive connections closed after --first-byte-grace. */
void drain_handover(struct drain *d, const char *cause);
/* Whether the stop is a handover (any thread). */
int drain_handing_over(const struct drain *d);
/* A drain signal (graced_server_drain): begins the drain, and a second one
 * while draining skips the rest of the delay. */
void drain_signal(struct drain *d, const char *cause);
/* Wakes the main loop to look at the workers' progress (any thread). */
void drain_wake(struct drain *d);

/* The state, and the time it was entered (0: not yet), from any thread. */
enum graced_state drain_state(const struct drain *d);
uint64_t drain_since_ms(const struct drain *d, enum graced_state state);
/* Whether every worker has closed its listener (what drain --wait waits
 * for). */
int drain_listeners_closed(const struct drain *d);
/* Milliseconds left before the listeners close (0 outside DRAINING; any
 * thread). */
uint64_t drain_ms_left(const struct drain *d);
/* Totals over the workers (any thread). */
unsigned drain_connections(const struct drain *d);
unsigned drain_in_flight(const struct drain *d);
/* 0 after a clean drain, 1 when requests were cut off. */
int drain_exit_status(const struct drain *d);

#endif
