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

/* Request duration buckets: metrics_bucket_us holds the upper bounds of
 * all but the last, which is +Inf. */
#define METRICS_NBUCKETS 14
extern const uint64_t metrics_bucket_us[METRICS_NBUCKETS - 1];

/* Durations of one route: counts per bucket (not cumulative) and the sum. */
struct metrics_hist {
	uint64_t buckets[METRICS_NBUCKETS];
	uint64_t sum_us;
};

/* Written by one loop (COUNTER_ADD), read on any thread (COUNTER_GET). */
struct metrics {
	uint64_t (*requests)[METRICS_NCODES]; /* [route id][code index] */
	struct metrics_hist *durations;       /* [route id] */
	size_t nroutes;                       /* rows, "no route" included */
	uint64_t accepted;                    /* connections accepted */
	uint64_t cut_off;                     /* requests cut off at stop */
	uint64_t rejected[FRAMING_NVERDICTS]; /* refused by the framing check */
};

int metrics_init(struct metrics *m, size_t nroutes);
void metrics_free(struct metrics *m);
void metrics_count(struct metrics *m, size_t route, int status);
/* Records a request of route that took us microseconds. */
void metrics_observe(struct metrics *m, size_t route, uint64_t us);
/* The status counted at code index i; 0 for METRICS_OTHER and
 * METRICS_ABORTED. */
int metrics_code(size_t i);

#endif
