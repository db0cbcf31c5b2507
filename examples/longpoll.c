/* A long poll: GET /wait answers when something happens or after
 * POLL_SECONDS. The reply comes later, from a timer on the request's own
 * loop, and a drain must not wait POLL_SECONDS for it: the on_drain hook
 * ends every waiting poll at once, and a poll that arrives while draining is
 * answered straight away.
 *
 *   cc longpoll.c $(pkg-config --cflags --libs graced) -o longpoll
 *   ./longpoll --listen 127.0.0.1:8080
 */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <graced.h>

#define POLL_SECONDS 30

/* A waiting poll. Handlers run on the workers' threads and on_drain on the
 * main loop's, so the list is under a lock. */
struct poll {
	struct graced_request *req;
	struct event *timer; /* on the request's loop */
	const char *why;     /* what the reply says: "timeout" or "draining" */
	struct poll *next;
};
static pthread_mutex_t polls_lock = PTHREAD_MUTEX_INITIALIZER;
static struct poll *polls;

/* Takes the poll off the list and frees it; returns what its reply says. */
static const char *
poll_unlink(struct poll *p)
{
	struct poll **pp;
	const char *why;

	pthread_mutex_lock(&polls_lock);
	for (pp = &polls; *pp != p; pp = &(*pp)->next)
		;
	*pp = p->next;
	why = p->why;
	pthread_mutex_unlock(&polls_lock);
	event_free(p->timer);
	free(p);
	return why;
}

/* On the request's loop: the timer ran out, or on_drain made it run. */
static void
poll_done(evutil_socket_t fd, short what, void *arg)
{
	struct poll *p = arg;
	struct graced_request *req = p->req;

	(void)fd;
	(void)what;
	graced_reply_json(
	    req, 200, json_pack("{s:s}", "event", poll_unlink(p)));
}

/* The client left before the reply: forget the poll. */
static void
poll_abort(struct graced_request *req, void *arg)
{
	(void)req;
	poll_unlink(arg);
}

static void
wait_handler(struct graced_request *req, void *arg)
{
	struct timeval tv = { POLL_SECONDS, 0 };
	struct poll *p;

	/* Draining already: nothing to wait for, and the drain waits for us. */
	if (graced_server_state(arg) != GRACED_SERVING) {
		graced_reply_json(
		    req, 200, json_pack("{s:s}", "event", "draining"));
		return;
	}
	p = calloc(1, sizeof(*p));
	if (p != NULL)
		p->timer = evtimer_new(graced_request_base(req), poll_done, p);
	if (p == NULL || p->timer == NULL) {
		free(p);
		graced_reply_error(req, 503, "out of memory");
		return;
	}
	p->req = req;
	p->why = "timeout";
	pthread_mutex_lock(&polls_lock);
	p->next = polls;
	polls = p;
	pthread_mutex_unlock(&polls_lock);
	graced_request_on_abort(req, poll_abort, p);
	evtimer_add(p->timer, &tv);
}

static const struct graced_route routes[] = {
	{ "GET", "/wait", wait_handler },
};

/* On the main loop when the drain begins. Each poll belongs to its worker's
 * loop: event_active() runs its timer there now (libevent makes that safe
 * across threads), and the reply goes out from that loop. */
static void
on_drain(struct graced_server *srv, void *arg)
{
	(void)srv;
	(void)arg;
	pthread_mutex_lock(&polls_lock);
	for (struct poll *p = polls; p != NULL; p = p->next) {
		p->why = "draining";
		event_active(p->timer, EV_TIMEOUT, 1);
	}
	pthread_mutex_unlock(&polls_lock);
}

static void
on_signal(evutil_socket_t signo, short what, void *arg)
{
	(void)what;
	graced_server_drain(arg, signo == SIGTERM ? "SIGTERM" : "SIGINT");
}

int
main(int argc, char **argv)
{
	struct graced_config *cfg = graced_config_new();
	struct graced_server *srv = NULL;
	struct event *term = NULL, *intr = NULL;
	char err[256] = "";
	int rc = 2;

	for (int i = 1; i < argc; i += 2) {
		if (i + 1 == argc || strncmp(argv[i], "--", 2) != 0 ||
		    graced_config_set(
		        cfg, argv[i] + 2, argv[i + 1], err, sizeof(err)) < 0) {
			fprintf(stderr, "longpoll: bad option %s %s\n", argv[i],
			    err);
			goto out;
		}
	}
	rc = 1;
	srv = graced_server_new(cfg);
	if (srv == NULL || graced_server_add_routes(srv, routes, 1, srv) < 0 ||
	    graced_server_on_drain(srv, on_drain, NULL) < 0)
		goto out;
	term = evsignal_new(graced_server_base(srv), SIGTERM, on_signal, srv);
	intr = evsignal_new(graced_server_base(srv), SIGINT, on_signal, srv);
	if (term == NULL || intr == NULL || event_add(term, NULL) < 0 ||
	    event_add(intr, NULL) < 0 || graced_server_start(srv) < 0)
		goto out;
	rc = graced_server_run(srv);
out:
	if (term != NULL)
		event_free(term);
	if (intr != NULL)
		event_free(intr);
	graced_server_free(srv);
	graced_config_free(cfg);
	return rc;
}
