/* The built-in endpoints: /healthz, /livez and /metrics. */
#ifndef GRACED_HEALTH_H
#define GRACED_HEALTH_H

#include <stddef.h>
#include <jansson.h>
#include "graced.h"

extern const struct graced_route health_routes[];
extern const size_t health_nroutes;

/* The /healthz body; *status is 200 while serving, 503 otherwise. */
json_t *health_body(struct graced_server *srv, int *status);

#endif
