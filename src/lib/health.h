/* The built-in endpoints: /healthz, /livez and /metrics. */
#ifndef GRACED_HEALTH_H
#define GRACED_HEALTH_H

#include <stddef.h>
#include <event2/buffer.h>
#include "graced.h"

extern const struct graced_route health_routes[];
extern const size_t health_nroutes;

/* Appends the /healthz body to out; returns 200 while serving and every
 * status hook says ready, else 503. */
int health_render(struct graced_server *srv, struct evbuffer *out);

#endif
