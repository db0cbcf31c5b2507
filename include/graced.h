/*
 * graced: HTTP services on libevent's evhttp that drain without dropping a
 * request. This header is the whole public API of libgraced. README.md
 * shows the daemon built on it; docs/HACKING.md describes the threads and
 * the layout of the library, docs/library.md how to build a service on it.
 *
 * A server is made from a config, given routes and hooks, started (which
 * binds its listeners) and run (which returns once the drain is over).
 *
 * Threads. The main loop is the thread that calls graced_server_run(): it
 * runs the drain, its timers, the admin listener, the hooks and the events
 * of graced_server_base(). Requests are served by workers: with workers = 1
 * the one worker shares the main loop (no thread); with more, each is a
 * thread of its own with its own event loop, listener and connections.
 * A handler runs on the loop of the worker that accepted its connection,
 * and timers it adds to graced_request_base() run there too.
 *
 * Which call from where:
 *   graced_config_*                   any thread, one config at a time
 *   graced_server_new, _add_routes,   before graced_server_run, on the
 *   _on_drain, _on_stop, _on_closed,  thread that will run the main loop
 *   _add_status, _add_metrics,
 *   _add_count, _on_upgrade, _start
 *   graced_server_run, _drain,        the main loop (its thread, or an
 *   _stop_now, _reopen_log, _base,    event on graced_server_base())
 *   _handover, _upgrade_reply
 *   graced_server_state, _address     any thread
 *   graced_server_free                after graced_server_run returned (or
 *                                     instead of starting)
 *   graced_request_*, graced_reply*   the request's own loop only
 *   graced_log                        any thread
 * A handler that wants the main loop (e.g. to drain) adds an event to
 * graced_server_base() with event_base_once(); that is safe from any
 * thread once libevent's locking is on (see below).
 *
 * Ownership. The caller owns a graced_config and frees it; the server
 * copies it. The server owns its loops, listeners and connections, and
 * graced_server_free() frees them all. Route tables and the names given
 * to status hooks are not copied: they must outlive the server. A
 * graced_request is the library's; see "Requests" below for how long it
 * lives. JSON passed to graced_reply_json() and graced_log() is taken.
 *
 * Process-wide effects, all made by graced_server_new():
 *  - SIGPIPE: if its disposition is the default (which kills the process
 *    when a client resets a connection libevent is writing to), it is set
 *    to SIG_IGN. A handler or an ignore set before is left alone.
 *  - Threads: with more than one worker, evthread_use_pthreads() turns on
 *    libevent's locking for the whole process (libevent requires it before
 *    any loop is made, and it cannot be turned off).
 *  - The log sink is the process's: the first graced_server_new() sets it
 *    up from its config (log-file, log-format) and starts the writer
 *    thread; later servers share it (their log options are ignored); the
 *    graced_server_free() of the last server stops the writer and closes
 *    the file. graced_log() before the first server writes to stderr.
 *  - Socket activation: listening sockets passed with LISTEN_FDS (and
 *    LISTEN_PID, LISTEN_FDNAMES; docs/systemd.md) are taken by the server
 *    and served instead of binding; the three variables are unset, and so
 *    is GRACED_LISTENERS_OWNED=1, which graced's supervisor adds: the
 *    sockets are then this process's to drain as its own when it stops
 *    for good (docs/library.md). With NOTIFY_SOCKET set, the states go to
 *    the service manager (READY=1, STOPPING=1, STATUS=).
 *
 * docs/library.md walks through three example services (examples/ in the
 * source tree), README.md has the daemon and the drain's contract, and
 * libgraced(3) sums up this API. Build against it with
 * `pkg-config --cflags --libs graced`.
 */
#ifndef GRACED_H
#define GRACED_H

#include <stddef.h>
#include <event2/event.h>
#include <event2/http.h>
#include <jansson.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The library is built with -fvisibility=hidden: what this header declares
 * is its whole exported interface, nothing else. */
#if defined(__GNUC__) || defined(__clang__)
#define GRACED_API __attribute__((visibility("default")))
#else
#define GRACED_API
#endif

struct graced_config;
struct graced_server;
struct graced_request;

/* The drain state machine; README.md ("Signals and exit status") and
 * docs/HACKING.md describe the transitions. */
enum graced_state {
	GRACED_STARTING, /* made, listeners not bound yet */
	GRACED_SERVING,  /* listeners bound, /healthz answers 200 */
	GRACED_DRAINING, /* /healthz answers 503, everything still served */
	GRACED_STOPPING, /* listeners closed, in-flight requests finishing */
	GRACED_STOPPED,  /* nothing left: hooks ran, the loop exits */
};

/* Returns the library's version, "MAJOR.MINOR.PATCH" (the package's). */
GRACED_API const char *graced_version(void);

/* Returns the lower-case name of a state ("serving"...). */
GRACED_API const char *graced_state_name(enum graced_state state);

/*
 * Config. Options are set by name, as the daemon's flags spell them without
 * the dashes ("listen", "drain-delay", ...). graced_config_set() returns 0,
 * -ENOENT for an unknown name, or -EINVAL with a one-line reason in err.
 */
GRACED_API struct graced_config *graced_config_new(void);
GRACED_API int graced_config_set(struct graced_config *cfg, const char *name,
    const char *value, char *err, size_t errlen);
/* Checks the options against each other (e.g. the timeout covers the
 * delay). Returns 0 or -EINVAL with the reason in err. */
GRACED_API int graced_config_check(
    const struct graced_config *cfg, char *err, size_t errlen);
/* Returns the option's current value as text, or NULL if unknown. The
 * string lives until the next call. */
GRACED_API const char *graced_config_get(
    const struct graced_config *cfg, const char *name);
/* Calls fn for every option: its name, default and a one-line help. */
GRACED_API void graced_config_each(
    void (*fn)(const char *name, const char *def, const char *help, void *arg),
    void *arg);
GRACED_API void graced_config_free(struct graced_config *cfg);

/*
 * Routes. A handler owns the request until it replies with one of the
 * graced_reply* calls, from inside the handler or later (from a timer or
 * another event on graced_request_base()). The table is not copied: keep it
 * alive (a static const array) as long as the server.
 */
typedef void graced_handler_fn(struct graced_request *req, void *arg);

struct graced_route {
	const char *method; /* "GET", "POST", ... */
	const char *path;   /* exact path, query string excluded */
	graced_handler_fn *fn;
};

/* Hooks, on the main loop. on_drain runs when draining begins, so
 * long-lived responses can end themselves (from their own worker's loop);
 * on_stop runs after the last request, before the loop exits, with the
 * seconds left before the shutdown timeout. Up to 8 of each: 0 or
 * -ENOSPC. */
typedef void graced_drain_fn(struct graced_server *srv, void *arg);
typedef void graced_stop_fn(
    struct graced_server *srv, double seconds_left, void *arg);

/* Makes a server from a copy of cfg. Returns NULL with the reason logged.
 * Changes the process as the top of this header says (SIGPIPE, libevent's
 * locking, the log sink, the passed listeners). */
GRACED_API struct graced_server *graced_server_new(
    const struct graced_config *cfg);
/* Adds n routes whose handlers get arg. Up to 8 tables. 0 or -ENOSPC. */
GRACED_API int graced_server_add_routes(struct graced_server *srv,
    const struct graced_route *routes, size_t n, void *arg);
GRACED_API int graced_server_on_drain(
    struct graced_server *srv, graced_drain_fn *fn, void *arg);
GRACED_API int graced_server_on_stop(
    struct graced_server *srv, graced_stop_fn *fn, void *arg);
/* on_closed runs on the main loop once every public listener of this
 * process is closed (in a drain, a handover or a stop now): from then on
 * no new connection reaches it. Once; up to 8 hooks: 0 or -ENOSPC. */
GRACED_API int graced_server_on_closed(
    struct graced_server *srv, graced_drain_fn *fn, void *arg);
/* Binds the public and admin listeners (or serves the passed ones):
 * STARTING -> SERVING. Returns 0, or a negative errno with one line naming
 * the cause logged; nothing stays bound on failure. */
GRACED_API int graced_server_start(struct graced_server *srv);
/* Runs the loop until STOPPED. Returns 0 after a clean drain, 1 when
 * requests had to be cut off. */
GRACED_API int graced_server_run(struct graced_server *srv);
/* Begins the drain (what SIGTERM does); cause is logged. A second call while
 * draining skips what is left of the drain delay. */
GRACED_API void graced_server_drain(
    struct graced_server *srv, const char *cause);
/* Hands the port over to a successor that already serves it (the same
 * listening sockets, passed to a new process: graced's upgrade). Unlike a
 * drain there is no delay and /healthz stays ready: the listeners are
 * closed at once without touching the shared sockets, every reply from now
 * on carries "Connection: close", idle keep-alive connections get
 * first-byte-grace seconds to send one more request, and what is in flight
 * finishes, bounded by shutdown-timeout. SERVING -> STOPPING; ignored in any
 * other state. cause is logged ("handover"). */
GRACED_API void graced_server_handover(
    struct graced_server *srv, const char *cause);
/* Stops at once (what SIGQUIT does): cuts off what is in flight. */
GRACED_API void graced_server_stop_now(
    struct graced_server *srv, const char *cause);
/* Reopens the process's log file, if one is set (what SIGHUP does). */
GRACED_API void graced_server_reopen_log(struct graced_server *srv);
GRACED_API enum graced_state graced_server_state(
    const struct graced_server *srv);
/* The main event loop: signal events and timers of the daemon go here. */
GRACED_API struct event_base *graced_server_base(struct graced_server *srv);
/* The address a listener is bound to, "HOST:PORT"; admin != 0 for the admin
 * listener. Useful with port 0. NULL before start. */
GRACED_API const char *graced_server_address(
    const struct graced_server *srv, int admin);
/* Frees everything the server owns; the last server also closes the log
 * sink. */
GRACED_API void graced_server_free(struct graced_server *srv);

/*
 * Status and metrics of the application. A status hook adds one field to
 * /healthz, "name":"word", and can make the instance unready: while
 * serving, /healthz then answers 503 with "status":"unready" (draining
 * still wins), which takes the instance out of a load balancer while
 * /livez stays 200. A metrics hook appends its own Prometheus text
 * (# HELP, # TYPE and samples) at the end of /metrics.
 * Both run on any worker's loop or the main loop, possibly at the same
 * time: fn must be thread-safe and quick (reading an atomic is the model;
 * /healthz is on the hot path). Add them before graced_server_start(), up
 * to 8 of each. name, and the word fn returns, must stay valid as long as
 * the server (string literals); both are JSON-escaped.
 */
/* Returns the status word; sets *ready to 0 if the instance should not get
 * traffic (it is 1 on entry). */
typedef const char *graced_status_fn(void *arg, int *ready);
typedef void graced_metrics_fn(struct evbuffer *out, void *arg);

/* Each returns 0, -EBUSY once started, or -ENOSPC when full. */
GRACED_API int graced_server_add_status(struct graced_server *srv,
    const char *name, graced_status_fn *fn, void *arg);
GRACED_API int graced_server_add_metrics(
    struct graced_server *srv, graced_metrics_fn *fn, void *arg);

/* A count hook adds "name":N to /healthz, from the same threads and on
 * the same terms as a status hook. 0, -EBUSY once started, or -ENOSPC past
 * 8. */
typedef unsigned long long graced_count_fn(void *arg);
GRACED_API int graced_server_add_count(struct graced_server *srv,
    const char *name, graced_count_fn *fn, void *arg);

/*
 * Upgrades. POST /admin/upgrade on the admin listener calls the upgrade hook
 * on the main loop, and the request waits until the service answers it with
 * graced_server_upgrade_reply() (from the main loop). While one waits, or
 * once the drain began, another is answered 409; without a hook, 501. The
 * graced daemon's hook asks its supervisor (README.md, "Upgrades").
 */
typedef void graced_upgrade_fn(struct graced_server *srv, void *arg);
/* 0, or -EBUSY once started. */
GRACED_API int graced_server_on_upgrade(
    struct graced_server *srv, graced_upgrade_fn *fn, void *arg);
/* Answers the waiting upgrade request with status and body (taken); does
 * nothing but free body if none waits (its client left). */
GRACED_API void graced_server_upgrade_reply(
    struct graced_server *srv, int status, json_t *body);

/* Requests. A graced_request stays valid until the reply is sent or the
 * abort callback has run, whichever is first. */
GRACED_API struct evhttp_request *graced_request_evhttp(
    struct graced_request *req);
GRACED_API struct graced_server *graced_request_server(
    struct graced_request *req);
/* The loop this request runs on: add the handler's own timers here. */
GRACED_API struct event_base *graced_request_base(struct graced_request *req);
/* The request body as one contiguous block of *len bytes (not
 * NUL-terminated); valid until the reply. */
GRACED_API const char *graced_request_body(
    struct graced_request *req, size_t *len);
/* fn runs if the request ends without a reply: cut off (shutdown timeout,
 * graced_server_stop_now) or its connection closed. libevent does not read
 * a connection while its request is held, so a client that leaves is not
 * seen before that. After fn the request must not be touched; fn never
 * runs once a reply was sent. */
GRACED_API void graced_request_on_abort(struct graced_request *req,
    void (*fn)(struct graced_request *req, void *arg), void *arg);

/* Replies. Each returns 0 or a negative errno; the request is done either
 * way. While draining, every reply carries "Connection: close". */
GRACED_API int graced_reply(struct graced_request *req, int status,
    const char *content_type, const void *body, size_t len);
/* Sends body as compact JSON and drops the caller's reference to it. */
GRACED_API int graced_reply_json(
    struct graced_request *req, int status, json_t *body);
/* Sends {"error":message,"status":status}. */
GRACED_API int graced_reply_error(
    struct graced_request *req, int status, const char *message);

/* Writes one log line: {"ts":...,"event":event, ...fields}, to the
 * process's log sink (see the top of this header). Takes the reference to
 * fields (an object, or NULL). Any thread. */
GRACED_API void graced_log(const char *event, json_t *fields);

#ifdef __cplusplus
}
#endif
#endif
