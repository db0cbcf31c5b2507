/* Requests as the public API sees them, and every way to reply to one: the
 * public face of conn.c's struct graced_request, on http.c's replies. */
#include <errno.h>

#include <event2/buffer.h>
#include <event2/http.h>

#include "conn.h"
#include "graced.h"
#include "http.h"

struct evhttp_request *
graced_request_evhttp(struct graced_request *r)
{
	return r->req;
}

struct graced_server *
graced_request_server(struct graced_request *r)
{
	return conn_server(r);
}

struct event_base *
graced_request_base(struct graced_request *r)
{
	return conn_base(r);
}

const char *
graced_request_body(struct graced_request *r, size_t *len)
{
	struct evbuffer *in = evhttp_request_get_input_buffer(r->req);
	unsigned char *p;

	*len = evbuffer_get_length(in);
	p = *len > 0 ? evbuffer_pullup(in, -1) : NULL;
	return p != NULL ? (const char *)p : "";
}

void
graced_request_on_abort(struct graced_request *r,
    void (*fn)(struct graced_request *, void *), void *arg)
{
	r->abort_fn = fn;
	r->abort_arg = arg;
}

/* The request's evhttp request, once: NULL if it was replied to. */
static struct evhttp_request *
request_take(struct graced_request *r)
{
	if (r->req == NULL || r->replied)
		return NULL;
	r->replied = 1;
	return r->req;
}

int
graced_reply(struct graced_request *r, int status, const char *content_type,
    const void *body, size_t len)
{
	struct evhttp_request *req = request_take(r);

	if (req == NULL)
		return -EALREADY;
	if (content_type != NULL)
		evhttp_add_header(evhttp_request_get_output_headers(req),
		    "Content-Type", content_type);
	if (len > 0 &&
	    evbuffer_add(evhttp_request_get_output_buffer(req), body, len) < 0)
		status = 500;
	http_send(req, status);
	return 0;
}

int
graced_reply_json(struct graced_request *r, int status, json_t *body)
{
	struct evhttp_request *req = request_take(r);

	if (req == NULL) {
		json_decref(body);
		return -EALREADY;
	}
	return http_reply_json(req, status, body);
}

int
graced_reply_error(struct graced_request *r, int status, const char *message)
{
	struct evhttp_request *req = request_take(r);

	if (req == NULL)
		return -EALREADY;
	return http_reply_error(req, status, message);
}
