/* Replies and the per-request accessors of the public API. */
#ifndef GRACED_REQUEST_H
#define GRACED_REQUEST_H

#include <event2/http.h>

/* Sends req's reply with what its output buffer holds (only the length of
 * it for HEAD). */
void request_send(struct evhttp_request *req, int status);
/* Makes evhttp close the connection once req's reply is flushed. */
void request_set_close(struct evhttp_request *req);

/* "GET", "POST", ... */
const char *request_method_name(enum evhttp_cmd_type cmd);

#endif
