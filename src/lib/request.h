/* Replies and the per-request accessors of the public API. */
#ifndef GRACED_REQUEST_H
#define GRACED_REQUEST_H

#include <stddef.h>
#include <event2/http.h>

/* Sends req's reply with what its output buffer holds (only the length of
 * it for HEAD). */
void request_send(struct evhttp_request *req, int status);
/* Makes evhttp close the connection once req's reply is flushed. */
void request_set_close(struct evhttp_request *req);

/* Longest X-Request-Id taken from a client. */
#define REQUEST_ID_MAX 128
/* Echoes the client's X-Request-Id if it is 1 to REQUEST_ID_MAX printable
 * ASCII characters, else sets a new one ("<12 hex digits>-<counter>",
 * unique in the process): every reply through graced carries it. */
void request_set_id(struct evhttp_request *req);
/* A new request id into buf (at least 32 bytes); returns its length. */
size_t request_new_id(char *buf);

/* "GET", "POST", ... */
const char *request_method_name(enum evhttp_cmd_type cmd);

#endif
