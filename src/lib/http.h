/* Replies on any evhttp request, public or admin: the one JSON reply, the
 * request ids, Connection: close and the method names. */
#ifndef GRACED_HTTP_H
#define GRACED_HTTP_H

#include <stddef.h>
#include <event2/http.h>
#include <jansson.h>

/* Sends req's reply with what its output buffer holds (only the length of
 * it for HEAD), with a Date header formatted once a second per thread. */
void http_send(struct evhttp_request *req, int status);
/* Sends body as compact JSON with its Content-Type and drops the caller's
 * reference to it; without memory for the text, a 500 saying so. Returns
 * 0. */
int http_reply_json(struct evhttp_request *req, int status, json_t *body);
/* Sends {"error":message,"status":status}. Returns 0. */
int http_reply_error(
    struct evhttp_request *req, int status, const char *message);
/* Makes evhttp close the connection once req's reply is flushed. */
void http_set_close(struct evhttp_request *req);

/* Longest X-Request-Id taken from a client. */
#define HTTP_ID_MAX 128
/* Echoes the client's X-Request-Id if it is 1 to HTTP_ID_MAX printable
 * ASCII characters, else sets a new one ("<12 hex digits>-<counter>",
 * unique in the process): every reply through graced carries it. */
void http_set_id(struct evhttp_request *req);
/* A new request id into buf (at least 32 bytes); returns its length. */
size_t http_new_id(char *buf);

/* "GET", "POST", ... */
const char *http_method_name(enum evhttp_cmd_type cmd);

#endif
