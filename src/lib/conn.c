/* The connection registry. libevent 2.1 has no accept hook, so every
 * connection is seen through the bufferevent we make for it (bevcb) and
 * adopted by a priority-0 event before any of its I/O runs; the close
 * callback then reports exactly once when evhttp frees it. */
#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>
#include <event2/keyvalq_struct.h>

#include "conn.h"
#include "http.h"
#include "log.h"
#include "util.h"

/* Belongs to its loop, except the counters, which other threads read. */
struct conn_set {
	const struct conn_env *env;
	struct graced_request **conns; /* indexed by fd */
	size_t conns_cap;
	struct graced_request *new_head; /* accepted, not adopted yet */
	struct event *adopt_ev;          /* priority 0: adopt new connections */
	/* Written by the registry's loop (COUNTER_ADD), read on any thread by
	 * /healthz, /metrics and the drain (COUNTER_GET). */
	unsigned nconns;    /* open connections, adopting or not */
	unsigned in_flight; /* requests held by handlers */
	struct metrics metrics;
};

static void conn_adopt_cb(evutil_socket_t fd, short what, void *arg);

struct conn_set *
conn_set_new(const struct conn_env *env)
{
	struct conn_set *s = calloc(1, sizeof(*s));

	if (s == NULL)
		return NULL;
	s->env = env;
	s->adopt_ev = event_new(env->base, -1, 0, conn_adopt_cb, s);
	if (s->adopt_ev == NULL ||
	    metrics_init(&s->metrics, env->router->nroutes + 1) < 0) {
		conn_set_free(s);
		return NULL;
	}
	event_priority_set(s->adopt_ev, 0);
	return s;
}

void
conn_set_free(struct conn_set *s)
{
	if (s == NULL)
		return;
	/* Those evhttp accepted last and freed before adoption. */
	conn_adopt_cb(-1, 0, s);
	if (s->adopt_ev != NULL)
		event_free(s->adopt_ev);
	metrics_free(&s->metrics);
	free(s->conns);
	free(s);
}

struct bufferevent *
conn_bevcb(struct event_base *base, void *arg)
{
	struct conn_set *s = arg;
	struct graced_request *r = calloc(1, sizeof(*r));
	struct bufferevent *bev;

	if (r == NULL)
		return NULL;
	bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
	if (bev == NULL) {
		free(r);
		return NULL;
	}
	/* Our reference keeps bev readable until adoption, even if evhttp
	 * frees the connection first. */
	bufferevent_incref(bev);
	framing_init(&r->fr, s->env->cfg->max_header_size);
	r->set = s;
	r->bev = bev;
	r->fd = -1;
	r->next_new = s->new_head;
	s->new_head = r;
	COUNTER_ADD(&s->nconns, 1);
	event_active(s->adopt_ev, EV_TIMEOUT, 0);
	s->env->news(s->env->arg, CONN_ACCEPTED);
	return bev;
}

static void
conn_input_cb(
    struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
	struct graced_request *r = arg;

	if (info->n_added > 0 && !r->rx_pending) {
		r->rx_pending = 1;
		r->rx_since_ms = now_ms();
		/* Only the first byte matters: evhttp drains this buffer line by
		 * line as it parses, so stay quiet until the request is done. */
		evbuffer_cb_set_flags(buf, r->input_cb, 0);
	}
}

static void
conn_rejected(struct graced_request *r, enum framing_verdict v)
{
	log_event("request_rejected",
	    json_pack("{s:s,s:i,s:I}", "reason", framing_reason(v), "status",
	        framing_status(v), "request", (json_int_t)r->fr.bad));
	COUNTER_ADD(&r->set->metrics.rejected[v], 1);
}

/* Caps the input buffered for one connection at what one request may
 * need: evhttp keeps a Content-Length body in the input until it is whole,
 * so less would stall a legal request. Past the cap the bufferevent stops
 * reading, and the kernel's window pushes back on a client that pipelines
 * without reading its replies. The watermark is set only once the input
 * holds len bytes, more than a keep-alive connection ever does: its own
 * evbuffer callback re-adds the read event on every change of the buffer,
 * a cost each request would pay. The cap can be passed once, by at most
 * one read (16 KiB), when it is set. */
static void
conn_limit_input(struct graced_request *r, size_t len)
{
	const struct graced_config *cfg = r->set->env->cfg;
	size_t cap = cfg->max_header_size + cfg->max_body;

	if (r->capped || len < (cap < 16384 ? cap : 16384))
		return;
	bufferevent_setwatermark(r->bev, EV_READ, 0, cap);
	r->capped = 1;
}

/* Shows the framing checker the bytes just read, before evhttp's read
 * callback parses them (evbuffer callbacks run as the bytes are added). */
static void
conn_framing_cb(
    struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
	struct graced_request *r = arg;
	size_t len = evbuffer_get_length(buf), left = info->n_added;
	enum framing_verdict v = FRAMING_OK;
	struct evbuffer_iovec iov[4];
	struct evbuffer_ptr at, *from = NULL;

	if (left == 0)
		return;
	conn_limit_input(r, len);
	while (left > 0 && v == FRAMING_OK && r->fr.verdict == FRAMING_OK) {
		int n;
		/* Bytes are only ever added at the end; most often to an empty
		 * buffer, read from its start. */
		if (len > left) {
			if (evbuffer_ptr_set(
			        buf, &at, len - left, EVBUFFER_PTR_SET) < 0)
				return;
			from = &at;
		}
		n = evbuffer_peek(buf, (ev_ssize_t)left, from, iov, 4);
		if (n <= 0)
			return;
		for (int i = 0; i < n && i < 4 && v == FRAMING_OK; i++) {
			size_t k = iov[i].iov_len < left ? iov[i].iov_len :
			                                   left;
			v = framing_scan(&r->fr, iov[i].iov_base, k);
			left -= k;
		}
	}
	if (v == FRAMING_OK)
		return;
	conn_rejected(r, v);
	/* evhttp would go on parsing a head refused for its size, keeping
	 * every line of it until the reply; stop it at the next line when
	 * that head is the next it reads (no request of the connection is
	 * being served), so the refusal costs no more memory. */
	if (v == FRAMING_TOO_MANY_FIELDS && r->req == NULL &&
	    r->requests + 1 == r->fr.bad && r->evcon != NULL)
		evhttp_connection_set_max_headers_size(r->evcon, 0);
}

enum framing_verdict
conn_verdict(const struct graced_request *r)
{
	/* A verdict is about one request: those before it on the connection
	 * were well framed and are served. */
	if (r->fr.bad == 0 || r->requests < r->fr.bad)
		return FRAMING_OK;
	return (enum framing_verdict)r->fr.verdict;
}

/* Listens for the first byte of the next request. */
static void
conn_watch_input(struct graced_request *r)
{
	evbuffer_cb_set_flags(
	    bufferevent_get_input(r->bev), r->input_cb, EVBUFFER_CB_ENABLED);
}

/* A connection left: the last one of a stopping server may end the drain. */
static void
conn_count_gone(struct conn_set *s)
{
	COUNTER_ADD(&s->nconns, -1);
	s->env->news(s->env->arg, CONN_GONE);
}

static int
registry_put(struct conn_set *s, struct graced_request *r)
{
	if ((size_t)r->fd >= s->conns_cap) {
		size_t cap = s->conns_cap ? s->conns_cap : 256;
		struct graced_request **bigger;
		while (cap <= (size_t)r->fd)
			cap *= 2;
		bigger = realloc(s->conns, cap * sizeof(*bigger));
		if (bigger == NULL)
			return -ENOMEM;
		memset(bigger + s->conns_cap, 0,
		    (cap - s->conns_cap) * sizeof(*bigger));
		s->conns = bigger;
		s->conns_cap = cap;
	}
	assert(s->conns[r->fd] == NULL);
	s->conns[r->fd] = r;
	return 0;
}

/* "ip:port", or "[ip]:port" for IPv6, into buf (at least 80 bytes); by
 * hand, as it runs for every request. */
static size_t
client_address(struct evhttp_connection *evcon, char *buf)
{
	char *host = NULL;
	ev_uint16_t port = 0;
	int v6;
	size_t n, len = 0;

	evhttp_connection_get_peer(evcon, &host, &port);
	if (host == NULL)
		host = "";
	n = strnlen(host, 64);
	v6 = memchr(host, ':', n) != NULL;
	if (v6)
		buf[len++] = '[';
	memcpy(buf + len, host, n);
	len += n;
	if (v6)
		buf[len++] = ']';
	buf[len++] = ':';
	for (unsigned d = 10000; d > 0; d /= 10)
		if (port >= d || d == 1)
			buf[len++] = (char)('0' + port / d % 10);
	return len;
}

/* evhttp answers some requests itself and never dispatches them: 413 over
 * --max-body, 400 for a request line or headers it cannot parse, 501 for
 * an unknown method. The only sign is the status line it writes into an
 * empty output buffer while no request of ours is held: count it (on the
 * "unmatched" row) and log it as a request with what is known. */
static void
conn_output_cb(
    struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
	struct graced_request *r = arg;
	char head[24], client[80], id[32], *sp;
	uint64_t now;
	struct log_line l;
	int status = 0;
	ev_ssize_t n;

	if (r->req != NULL || info->n_added == 0 || info->orig_size != 0)
		return;
	/* "HTTP/1.x NNN ": the version is the request's, any digits. */
	n = evbuffer_copyout(buf, head, sizeof(head) - 1);
	if (n < 13 || memcmp(head, "HTTP/1.", 7) != 0)
		return;
	head[n] = '\0';
	sp = strchr(head, ' ');
	for (int i = 1; sp != NULL && i <= 3; i++) {
		if (sp[i] < '0' || sp[i] > '9')
			return;
		status = status * 10 + (sp[i] - '0');
	}
	if (status < 400)
		return;
	metrics_count(&r->set->metrics, r->set->env->router->nroutes, status);
	if (!r->set->env->cfg->access_log)
		return;
	now = now_us();
	log_line_begin(&l, "request", now);
	log_line_str(&l, "client", client, client_address(r->evcon, client));
	log_line_uint(&l, "status", (uint64_t)status);
	if (r->rx_pending)
		log_line_ms(&l, "ms", now - r->rx_since_ms * 1000);
	log_line_str(&l, "request_id", id, http_new_id(id));
	log_line_str(&l, "note", "answered by evhttp", 18);
	log_line_end(&l);
}

static void
conn_closed(struct evhttp_connection *evcon, void *arg)
{
	struct graced_request *r = arg;
	struct conn_set *s = r->set;

	assert(r->evcon == evcon);
	(void)evcon;
	evbuffer_remove_cb_entry(bufferevent_get_input(r->bev), r->input_cb);
	evbuffer_remove_cb_entry(bufferevent_get_input(r->bev), r->framing_cb);
	if (r->output_cb != NULL)
		evbuffer_remove_cb_entry(
		    bufferevent_get_output(r->bev), r->output_cb);
	if (r->req != NULL) {
		/* The handler never finished: evhttp frees req next. */
		COUNTER_ADD(&s->in_flight, -1);
		metrics_count(&s->metrics, r->route, 0);
		r->req = NULL;
		/* A reply ended the request for its handler, even when its
		 * write is what found the client gone. */
		if (r->abort_fn != NULL && !r->replied)
			r->abort_fn(r, r->abort_arg);
	}
	s->conns[r->fd] = NULL;
	free(r);
	conn_count_gone(s);
}

static void
conn_adopt(struct conn_set *s, struct graced_request *r)
{
	void *cbarg = NULL;

	bufferevent_getcb(r->bev, NULL, NULL, NULL, &cbarg);
	r->fd = bufferevent_getfd(r->bev);
	if (cbarg == NULL || r->fd < 0 || registry_put(s, r) < 0) {
		/* evhttp already dropped it (or we cannot track it). */
		if (cbarg != NULL)
			evhttp_connection_free(cbarg);
		bufferevent_decref(r->bev);
		free(r);
		conn_count_gone(s);
		return;
	}
	bufferevent_decref(r->bev);
	r->evcon = cbarg;
	r->input_cb =
	    evbuffer_add_cb(bufferevent_get_input(r->bev), conn_input_cb, r);
	r->framing_cb =
	    evbuffer_add_cb(bufferevent_get_input(r->bev), conn_framing_cb, r);
	r->output_cb =
	    evbuffer_add_cb(bufferevent_get_output(r->bev), conn_output_cb, r);
	evhttp_connection_set_closecb(r->evcon, conn_closed, r);
	COUNTER_ADD(&s->metrics.accepted, 1);
	r->overloaded = s->env->news(s->env->arg, CONN_ADOPTED) != 0;
}

static void
conn_adopt_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn_set *s = arg;

	(void)fd;
	(void)what;
	while (s->new_head != NULL) {
		struct graced_request *r = s->new_head;
		s->new_head = r->next_new;
		r->next_new = NULL;
		conn_adopt(s, r);
	}
}

struct graced_request *
conn_find(struct conn_set *s, struct evhttp_request *req)
{
	struct evhttp_connection *evcon = evhttp_request_get_connection(req);
	struct bufferevent *bev;
	evutil_socket_t fd;

	if (evcon == NULL)
		return NULL;
	bev = evhttp_connection_get_bufferevent(evcon);
	fd = bufferevent_getfd(bev);
	if (fd < 0 || (size_t)fd >= s->conns_cap || s->conns[fd] == NULL ||
	    s->conns[fd]->evcon != evcon)
		return NULL;
	return s->conns[fd];
}

static int
is_probe(const struct graced_route *rt)
{
	return rt != NULL &&
	    (strcmp(rt->path, "/healthz") == 0 ||
	        strcmp(rt->path, "/livez") == 0);
}

/* The reply's X-Request-Id and Content-Length in one pass over its
 * headers (evhttp_find_header twice cost more than the rest of the line). */
static void
reply_headers(struct evhttp_request *req, const char **id, const char **len)
{
	struct evkeyval *kv;

	*id = *len = NULL;
	for (kv = evhttp_request_get_output_headers(req)->tqh_first; kv != NULL;
	     kv = kv->next.tqe_next) {
		if (*id == NULL && strcasecmp(kv->key, "X-Request-Id") == 0)
			*id = kv->value;
		else if (*len == NULL &&
		    strcasecmp(kv->key, "Content-Length") == 0)
			*len = kv->value;
	}
}

/* One "request" line, formatted on the stack: no JSON objects, no
 * allocation. */
static void
access_log(struct graced_request *r, struct evhttp_request *req, int status,
    uint64_t now)
{
	const char *uri = evhttp_request_get_uri(req);
	const char *method = http_method_name(evhttp_request_get_command(req));
	const char *ua = evhttp_find_header(
	    evhttp_request_get_input_headers(req), "User-Agent");
	const char *id, *length;
	char path[256], client[80];
	struct log_line l;
	size_t i;

	for (i = 0; uri != NULL && uri[i] != '\0' && i < sizeof(path) - 1; i++)
		path[i] = (uri[i] < 0x20 || (unsigned char)uri[i] >= 0x7f) ?
		    '?' :
		    uri[i];
	reply_headers(req, &id, &length);
	log_line_begin(&l, "request", now);
	log_line_str(&l, "client", client, client_address(r->evcon, client));
	log_line_str(&l, "method", method, strlen(method));
	log_line_str(&l, "path", path, i);
	log_line_uint(&l, "status", (uint64_t)status);
	log_line_uint(&l, "bytes_in", r->body_in);
	/* evhttp sets the length of every reply but a chunked one; a HEAD
	 * reply states it without sending the body. */
	if (length != NULL)
		log_line_uint(&l, "bytes_out",
		    evhttp_request_get_command(req) == EVHTTP_REQ_HEAD ?
		        0 :
		        strtoull(length, NULL, 10));
	log_line_ms(&l, "ms", now - r->started_us);
	log_line_str(&l, "user_agent", ua, ua ? strlen(ua) : 0);
	log_line_str(&l, "request_id", id, id ? strlen(id) : 0);
	log_line_end(&l);
}

static void
conn_request_done(struct evhttp_request *req, void *arg)
{
	struct graced_request *r = arg;
	struct conn_set *s = r->set;
	const struct graced_config *cfg = s->env->cfg;
	int status = evhttp_request_get_response_code(req);
	uint64_t now;

	if (r->req != req)
		return;
	now = now_us();
	metrics_count(&s->metrics, r->route, status);
	metrics_observe(&s->metrics, r->route, now - r->started_us);
	if (cfg->access_log &&
	    (cfg->access_log_probes ||
	        !is_probe(router_route(s->env->router, r->route))))
		access_log(r, req, status, now);
	COUNTER_ADD(&s->in_flight, -1);
	r->req = NULL;
	r->replied = 0;
	r->abort_fn = NULL;
	r->abort_arg = NULL;
	if (!r->rx_pending)
		conn_watch_input(r);
}

void
conn_request_begin(struct graced_request *r, struct evhttp_request *req)
{
	struct evbuffer *input = bufferevent_get_input(r->bev);

	r->req = req;
	r->requests++;
	r->route = r->set->env->router->nroutes;
	r->started_us = now_us();
	r->body_in = evbuffer_get_length(evhttp_request_get_input_buffer(req));
	http_set_id(req);
	r->rx_pending = evbuffer_get_length(input) > 0;
	if (r->rx_pending)
		r->rx_since_ms = now_ms();
	COUNTER_ADD(&r->set->in_flight, 1);
	evhttp_request_set_on_complete_cb(req, conn_request_done, r);
}

static int
conn_is_idle(const struct graced_request *r)
{
	return r->req == NULL && !r->rx_pending && r->requests > 0;
}

static int
conn_is_fresh(const struct graced_request *r)
{
	return r->req == NULL && !r->rx_pending && r->requests == 0;
}

struct graced_server *
conn_server(const struct graced_request *r)
{
	return r->set->env->srv;
}

struct event_base *
conn_base(const struct graced_request *r)
{
	return r->set->env->base;
}

void
conn_route(struct graced_request *r, size_t id)
{
	r->route = id;
}

int
conn_overloaded(const struct graced_request *r)
{
	return r->overloaded;
}

/* Replies not sent yet will close the connection. A reply already sent
 * promised keep-alive in its headers: closing after it would turn the next
 * request into an EOF, so that connection gets "close" on its next request
 * instead. */
void
conn_mark_close(struct conn_set *s)
{
	for (size_t i = 0; i < s->conns_cap; i++) {
		struct graced_request *r = s->conns[i];
		if (r != NULL && r->req != NULL && !r->replied)
			http_set_close(r->req);
	}
}

void
conn_close_idle(struct conn_set *s, int fresh)
{
	for (size_t i = 0; i < s->conns_cap; i++) {
		struct graced_request *r = s->conns[i];
		if (r != NULL &&
		    (conn_is_idle(r) || (fresh && conn_is_fresh(r))))
			evhttp_connection_free(r->evcon);
	}
}

unsigned
conn_cut_off(struct conn_set *s)
{
	unsigned cut = 0;

	for (size_t i = 0; i < s->conns_cap; i++) {
		struct graced_request *r = s->conns[i];
		if (r == NULL)
			continue;
		if (r->req != NULL || r->rx_pending)
			cut++;
		evhttp_connection_free(r->evcon);
	}
	COUNTER_ADD(&s->metrics.cut_off, cut);
	return cut;
}

void
conn_sweep(struct conn_set *s, uint64_t limit_ms)
{
	uint64_t now = now_ms();

	for (size_t i = 0; i < s->conns_cap; i++) {
		struct graced_request *r = s->conns[i];
		if (r == NULL || r->req != NULL || !r->rx_pending ||
		    now - r->rx_since_ms < limit_ms)
			continue;
		log_event("request_timeout",
		    json_pack(
		        "{s:I}", "ms", (json_int_t)(now - r->rx_since_ms)));
		evhttp_connection_free(r->evcon);
	}
}

unsigned
conn_count(const struct conn_set *s)
{
	return COUNTER_GET(&s->nconns);
}

unsigned
conn_in_flight(const struct conn_set *s)
{
	return COUNTER_GET(&s->in_flight);
}

const struct metrics *
conn_metrics(const struct conn_set *s)
{
	return &s->metrics;
}
