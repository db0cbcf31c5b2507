/* The built-in endpoints' bodies: /healthz, /livez and /metrics, for the
 * public listener (through the router) and the admin listener. */
#ifndef GRACED_HEALTH_H
#define GRACED_HEALTH_H

#include <stddef.h>
#include <event2/buffer.h>

#include "graced.h"
#include "router.h"

struct health;
struct drain;
struct worker;
struct listener_guard;

/* The routes of the public listener; their handlers' arg is a struct
 * health. */
extern const struct graced_route health_routes[];
extern const size_t health_nroutes;

/* What the pages show: the drain's state and the workers' counts. NULL
 * without memory. */
struct health *health_new(const struct drain *d);
void health_free(struct health *h);
/* Set at start, before any page is rendered; NULL, 0 before. */
void health_set_workers(struct health *h, struct worker *const *workers,
    unsigned n, const struct router *router);
void health_set_admin_guard(
    struct health *h, const struct listener_guard *guard);
/* The application's hooks (graced.h), added before start: 0 or -ENOSPC
 * past HEALTH_MAX_HOOKS. */
#define HEALTH_MAX_HOOKS 8
int health_add_status(
    struct health *h, const char *name, graced_status_fn *fn, void *arg);
int health_add_count(
    struct health *h, const char *name, graced_count_fn *fn, void *arg);
int health_add_metrics(struct health *h, graced_metrics_fn *fn, void *arg);

/* Appends the /healthz body to out; returns 200 while serving and every
 * status hook says ready, else 503. Any thread. */
int health_render(const struct health *h, struct evbuffer *out);
/* Appends the whole Prometheus text page to out. Any thread. */
void health_render_metrics(const struct health *h, struct evbuffer *out);

#endif
