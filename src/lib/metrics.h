/* Request counters (per worker, summed on read) and the Prometheus page. */
#ifndef GRACED_METRICS_H
#define GRACED_METRICS_H

#include <stddef.h>
#include <stdint.h>
#include <event2/buffer.h>

#include "framing.h"

struct graced_server;

/* Status codes with a counter of their own; the rest count as "other",
 * requests that ended without a reply as "aborted". */
#define METRICS_NCODES 20
#define METRICS_OTHER (METRICS_NCODES - 2)
#define METRICS_ABORTED (METRICS_NCODES - 1)

struct metrics {
	uint64_t (*requests)[METRICS_NCODES]; /* [route id][code index] */
	size_t nroutes;                       /* rows, "no route" included */
	uint64_t accepted;                    /* connections accepted */
	uint64_t cut_off;                     /* requests cut off at stop */
	uint64_t rejected[FRAMING_NVERDICTS]; /* refused by the framing check */
};

int metrics_init(struct metrics *m, size_t nroutes);
void metrics_free(struct metrics *m);
void metrics_count(struct metrics *m, size_t route, int status);
/* Appends the whole Prometheus text page for srv to out. */
void metrics_render(struct graced_server *srv, struct evbuffer *out);

#endif
