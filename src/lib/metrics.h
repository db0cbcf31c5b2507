/* Request counters: one struct per worker, written only by its loop and
 * summed by whoever reads them. */
#ifndef GRACED_METRICS_H
#define GRACED_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "framing.h"

/* Status codes with a counter of their own; the rest count as "other",
 * requests that ended without a reply as "aborted". */
#define METRICS_NCODES 20
#define METRICS_OTHER (METRICS_NCODES - 2)
#define METRICS_ABORTED (METRICS_NCODES - 1)

/* Written by one loop (COUNTER_ADD), read on any thread (COUNTER_GET). */
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
/* The status counted at code index i; 0 for METRICS_OTHER and
 * METRICS_ABORTED. */
int metrics_code(size_t i);

#endif
