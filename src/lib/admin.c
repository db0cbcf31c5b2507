/* The admin listener. POST /admin/drain starts a drain; with ?wait=1 the
 * reply is held until the public listeners have closed, which is what a
 * Kubernetes preStop hook waits for: the drain tells it (drain_watch), and
 * it holds the end of the main loop until those replies are flushed
 * (drain_hold). POST /admin/upgrade hands the request to the service's
 * upgrade hook and holds it until admin_upgrade_reply. In a handover the
 * admin listener closes with the public ones. Its routes are a const table
 * on the shared router. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>

#include "admin.h"
#include "drain.h"
#include "health.h"
#include "http.h"
#include "listener.h"
#include "log.h"
#include "router.h"

struct waiter {
	struct admin *a;
	struct evhttp_request *req;
	struct waiter *next, *prev;
};

/* Main loop only. */
struct admin {
	struct drain *drain;
	const struct health *health;
	const char *token; /* --admin-token-file's, or NULL: none */
	struct evhttp *http;
	struct router router; /* admin_routes */
	struct waiter *waiters;
	struct listener_guard *guard;      /* accept failures: pause, count */
	struct evhttp_bound_socket *bound; /* NULL once closed (handover) */
	struct graced_server *srv;         /* handed to the upgrade hook */
	graced_upgrade_fn *upgrade;        /* NULL: 501 */
	void *upgrade_arg;
	struct evhttp_request *upgrading; /* the one waiting upgrade request */
};

static void
waiter_unlink(struct waiter *wt)
{
	if (wt->prev != NULL)
		wt->prev->next = wt->next;
	else
		wt->a->waiters = wt->next;
	if (wt->next != NULL)
		wt->next->prev = wt->prev;
	evhttp_connection_set_closecb(
	    evhttp_request_get_connection(wt->req), NULL, NULL);
	free(wt);
}

static void
waiter_gone(struct evhttp_connection *evcon, void *arg)
{
	(void)evcon;
	waiter_unlink(arg);
}

/* A released reply is flushed, or its connection is gone: once none is
 * left, the drain may end the loop (drain_release). */
static void
sent(struct admin *a)
{
	drain_release(a->drain);
}

static void
sent_gone(struct evhttp_connection *evcon, void *arg)
{
	(void)evcon;
	sent(arg);
}

static void
sent_cb(struct evhttp_request *req, void *arg)
{
	evhttp_connection_set_closecb(
	    evhttp_request_get_connection(req), NULL, NULL);
	sent(arg);
}

static void
reply_state(struct admin *a, struct evhttp_request *req, int status)
{
	http_reply_json(req, status,
	    json_pack(
	        "{s:s}", "state", graced_state_name(drain_state(a->drain))));
}

/* Releases a hold on the end of the main loop once req's reply is flushed
 * or its connection is gone. */
static void
release_when_sent(struct admin *a, struct evhttp_request *req)
{
	evhttp_request_set_on_complete_cb(req, sent_cb, a);
	evhttp_connection_set_closecb(
	    evhttp_request_get_connection(req), sent_gone, a);
}

/* The drain's watcher: answers the waiting "drain --wait" requests once
 * the listeners are closed, and in a handover closes the admin listener
 * too (the successor's serves the port). */
static void
admin_release(void *arg)
{
	struct admin *a = arg;

	if (!drain_listeners_closed(a->drain))
		return;
	if (drain_handing_over(a->drain) && a->bound != NULL) {
		listener_guard_detach(a->guard);
		evhttp_del_accept_socket(a->http, a->bound);
		a->bound = NULL;
		log_event(
		    "listener_closed", json_pack("{s:s}", "listener", "admin"));
	}
	while (a->waiters != NULL) {
		struct evhttp_request *req = a->waiters->req;
		waiter_unlink(a->waiters);
		drain_hold(a->drain);
		release_when_sent(a, req);
		reply_state(a, req, 200);
	}
}

static void
upgrade_gone(struct evhttp_connection *evcon, void *arg)
{
	struct admin *a = arg;

	(void)evcon;
	a->upgrading = NULL;
	drain_release(a->drain);
}

/* POST /admin/upgrade: one at a time per generation; the hook (the
 * service's supervisor link) answers through admin_upgrade_reply. */
static void
admin_upgrade(struct admin *a, struct evhttp_request *req)
{
	if (a->upgrade == NULL) {
		http_reply_error(
		    req, 501, "this service cannot upgrade itself");
		return;
	}
	if (a->upgrading != NULL) {
		http_reply_error(req, 409, "an upgrade is already in progress");
		return;
	}
	if (drain_state(a->drain) != GRACED_SERVING) {
		http_reply_error(req, 409, "the service is stopping");
		return;
	}
	/* Held, and the loop with it: the answer may come after this
	 * process handed over and has nothing else left to do. */
	a->upgrading = req;
	drain_hold(a->drain);
	evhttp_connection_set_closecb(
	    evhttp_request_get_connection(req), upgrade_gone, a);
	a->upgrade(a->srv, a->upgrade_arg);
}

void
admin_upgrade_reply(struct admin *a, int status, json_t *body)
{
	struct evhttp_request *req = a->upgrading;

	if (req == NULL) {
		json_decref(body);
		return;
	}
	a->upgrading = NULL;
	release_when_sent(a, req);
	http_reply_json(req, status, body);
}

static void
admin_drain(struct admin *a, struct evhttp_request *req)
{
	const char *query =
	    evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
	struct waiter *wt;

	drain_begin(a->drain, "admin");
	if (query == NULL || strstr(query, "wait") == NULL ||
	    drain_listeners_closed(a->drain)) {
		reply_state(
		    a, req, drain_listeners_closed(a->drain) ? 200 : 202);
		return;
	}
	wt = calloc(1, sizeof(*wt));
	if (wt == NULL) {
		http_reply_error(req, 503, "out of memory");
		return;
	}
	wt->a = a;
	wt->req = req;
	wt->next = a->waiters;
	if (a->waiters != NULL)
		a->waiters->prev = wt;
	a->waiters = wt;
	evhttp_connection_set_closecb(
	    evhttp_request_get_connection(req), waiter_gone, wt);
}

int
admin_token_read(const char *path, char **token, char *err, size_t errlen)
{
	char buf[ADMIN_TOKEN_MAX + 3];
	ssize_t n = -1;
	size_t len = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC), rc = -EINVAL;

	*token = NULL;
	while (fd >= 0 && len < sizeof(buf)) {
		n = read(fd, buf + len, sizeof(buf) - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	if (fd < 0 || n < 0) {
		rc = -errno;
		snprintf(
		    err, errlen, "cannot read '%s': %s", path, strerror(errno));
		goto out;
	}
	/* A full buffer means the file goes on: too long, whatever ends it. */
	if (len == sizeof(buf))
		len = 0;
	while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
		len--;
	if (len == 0 || len > ADMIN_TOKEN_MAX) {
		snprintf(err, errlen, "'%s' is empty or longer than %d bytes",
		    path, ADMIN_TOKEN_MAX);
		goto out;
	}
	/* It travels in a header: anything else could never match. */
	for (size_t i = 0; i < len; i++)
		if (buf[i] <= ' ' || buf[i] > '~') {
			snprintf(err, errlen,
			    "'%s' holds a space or a control character", path);
			goto out;
		}
	*token = strndup(buf, len);
	rc = *token != NULL ? 0 : -ENOMEM;
	if (rc < 0)
		snprintf(err, errlen, "out of memory");
out:
	if (fd >= 0)
		close(fd);
	return rc;
}

/* Whether an Authorization value carries the token. The time taken depends
 * on the token's length only, never on where the first difference is. */
static int
token_matches(const char *token, const char *auth)
{
	size_t tlen = strlen(token), glen;
	unsigned char diff;

	if (auth == NULL || strncasecmp(auth, "Bearer ", 7) != 0)
		return 0;
	auth += 7;
	while (*auth == ' ')
		auth++;
	glen = strlen(auth);
	diff = glen != tlen;
	for (size_t i = 0; i < tlen; i++)
		diff |= (unsigned char)(token[i] ^ (i < glen ? auth[i] : 0));
	return diff == 0;
}

/* A media type is application/json whatever its parameters. */
static int
type_is_json(const char *type)
{
	size_t len = strcspn(type, ";");

	while (len > 0 && (type[len - 1] == ' ' || type[len - 1] == '\t'))
		len--;
	return len == 16 && strncasecmp(type, "application/json", 16) == 0;
}

/* Refuses what a browser can send from any page: a browser puts an Origin
 * header on every cross-site POST, and the bodies an HTML form sends are
 * never JSON. Then, with a token, a request without it. Replies and
 * returns 1 on refusal. */
static int
admin_refuse(struct admin *a, struct evhttp_request *req)
{
	struct evkeyvalq *in = evhttp_request_get_input_headers(req);
	const char *auth = evhttp_find_header(in, "Authorization");
	const char *why = NULL, *message = "refused: sent as a browser would";
	struct evkeyval *h;
	int status = 403;

	TAILQ_FOREACH(h, in, next)
	{
		if (strcasecmp(h->key, "Origin") == 0)
			why = "origin";
		else if (strcasecmp(h->key, "Content-Type") == 0 &&
		    !type_is_json(h->value))
			why = "content_type";
		if (why != NULL)
			break;
	}
	if (why == NULL && a->token != NULL && !token_matches(a->token, auth)) {
		status = 401;
		why = auth != NULL ? "wrong_token" : "no_token";
		message = "a bearer token is required";
		evhttp_add_header(evhttp_request_get_output_headers(req),
		    "WWW-Authenticate", "Bearer");
	}
	if (why == NULL)
		return 0;
	/* No path: its raw bytes need not be UTF-8, which JSON requires. */
	log_event("admin_refused",
	    json_pack("{s:s,s:s,s:i}", "reason", why, "method",
	        http_method_name(evhttp_request_get_command(req)), "status",
	        status));
	http_reply_error(req, status, message);
	return 1;
}

void
admin_check_exposed(int fd, const char *token, const char *address)
{
	struct sockaddr_storage ss;
	socklen_t slen = sizeof(ss);
	const struct sockaddr_in *sin = (const void *)&ss;
	const struct sockaddr_in6 *sin6 = (const void *)&ss;

	if (token != NULL || getsockname(fd, (struct sockaddr *)&ss, &slen) < 0)
		return;
	if (ss.ss_family == AF_INET &&
	    (ntohl(sin->sin_addr.s_addr) >> 24) == 127)
		return;
	if (ss.ss_family == AF_INET6 &&
	    (IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr) ||
	        (IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr) &&
	            sin6->sin6_addr.s6_addr[12] == 127)))
		return;
	log_event("admin_unprotected",
	    json_pack("{s:s,s:s}", "admin", address, "hint",
	        "the admin listener is not on loopback and has no "
	        "--admin-token-file: anyone who reaches it can drain"));
}

static void
admin_healthz(struct admin *a, struct evhttp_request *req)
{
	int status =
	    health_render(a->health, evhttp_request_get_output_buffer(req));

	evhttp_add_header(evhttp_request_get_output_headers(req),
	    "Content-Type", "application/json");
	http_send(req, status);
}

static void
admin_livez(struct admin *a, struct evhttp_request *req)
{
	(void)a;
	http_reply_json(req, 200, json_pack("{s:s}", "status", "alive"));
}

static void
admin_metrics(struct admin *a, struct evhttp_request *req)
{
	health_render_metrics(a->health, evhttp_request_get_output_buffer(req));
	evhttp_add_header(evhttp_request_get_output_headers(req),
	    "Content-Type", "text/plain; version=0.0.4");
	http_send(req, 200);
}

/* The router finds the route; the handler at the same index serves it. */
static const struct graced_route admin_routes[] = {
	{ "POST", "/admin/drain", NULL },
	{ "POST", "/admin/upgrade", NULL },
	{ "GET", "/healthz", NULL },
	{ "GET", "/livez", NULL },
	{ "GET", "/metrics", NULL },
};
static void (*const admin_handlers[])(
    struct admin *, struct evhttp_request *) = {
	admin_drain,
	admin_upgrade,
	admin_healthz,
	admin_livez,
	admin_metrics,
};
#define ADMIN_NROUTES (sizeof(admin_routes) / sizeof(admin_routes[0]))

static void
admin_dispatch(struct evhttp_request *req, void *arg)
{
	struct admin *a = arg;
	const char *path =
	    evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
	struct router_match m;

	http_set_id(req);
	if (path == NULL)
		path = "";
	if (admin_refuse(a, req))
		return;
	router_find(&a->router,
	    http_method_name(evhttp_request_get_command(req)), path,
	    strlen(path), &m);
	if (m.route != NULL) {
		admin_handlers[m.id](a, req);
		return;
	}
	if (m.status == 405)
		evhttp_add_header(
		    evhttp_request_get_output_headers(req), "Allow", m.allow);
	http_reply_error(req, m.status,
	    m.status == 405 ? "method not allowed" : "not found");
}

struct admin *
admin_new(const struct admin_env *env, int fd)
{
	struct admin *a = calloc(1, sizeof(*a));
	struct evconnlistener *lev;

	if (a == NULL) {
		close(fd);
		return NULL;
	}
	a->drain = env->drain;
	a->health = env->health;
	a->token = env->token;
	a->srv = env->srv;
	a->upgrade = env->upgrade;
	a->upgrade_arg = env->upgrade_arg;
	router_add(&a->router, admin_routes, ADMIN_NROUTES, NULL);
	a->http = evhttp_new(env->base);
	a->guard = listener_guard_new(env->base, "admin");
	/* Backlog 0: the socket's own stays (see worker_listen). */
	lev = a->http && a->guard ? evconnlistener_new(env->base, NULL, NULL,
	                                LEV_OPT_CLOSE_ON_FREE, 0, fd) :
	                            NULL;
	if (lev == NULL)
		close(fd);
	if (lev != NULL)
		a->bound = evhttp_bind_listener(a->http, lev);
	if (lev == NULL || a->bound == NULL) {
		if (lev != NULL)
			evconnlistener_free(lev);
		admin_free(a);
		return NULL;
	}
	listener_guard_attach(a->guard, lev);
	evhttp_set_gencb(a->http, admin_dispatch, a);
	evhttp_set_timeout(a->http, 30);
	evhttp_set_max_body_size(a->http, 4096);
	evhttp_set_max_headers_size(
	    a->http, (ev_ssize_t)env->cfg->max_header_size);
	drain_watch(a->drain, admin_release, a);
	return a;
}

void
admin_free(struct admin *a)
{
	if (a == NULL)
		return;
	if (a->drain != NULL)
		drain_watch(a->drain, NULL, NULL);
	/* Before evhttp_free frees the listener it watches. */
	listener_guard_free(a->guard);
	if (a->http != NULL)
		evhttp_free(a->http);
	free(a);
}

const struct listener_guard *
admin_guard(const struct admin *a)
{
	return a == NULL ? NULL : a->guard;
}
