/* Counters are plain per-worker arrays, written only by their worker's loop
 * and summed when /metrics is read (health.c renders the page). */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>

#include "metrics.h"
#include "util.h"

static const int codes[METRICS_OTHER] = {
	200,
	201,
	202,
	204,
	301,
	302,
	304,
	400,
	401,
	403,
	404,
	405,
	408,
	413,
	429,
	500,
	502,
	503,
};

/* From 1 ms to 10 s, the buckets Prometheus clients use by default plus a
 * finer start: a keep-alive reply takes well under a millisecond. */
const uint64_t metrics_bucket_us[METRICS_NBUCKETS - 1] = {
	1000,
	2500,
	5000,
	10000,
	25000,
	50000,
	100000,
	250000,
	500000,
	1000000,
	2500000,
	5000000,
	10000000,
};

int
metrics_init(struct metrics *m, size_t nroutes)
{
	m->requests = calloc(nroutes, sizeof(*m->requests));
	m->durations = calloc(nroutes, sizeof(*m->durations));
	m->nroutes = nroutes;
	if (m->requests == NULL || m->durations == NULL) {
		metrics_free(m);
		return -ENOMEM;
	}
	return 0;
}

void
metrics_free(struct metrics *m)
{
	free(m->requests);
	free(m->durations);
	m->requests = NULL;
	m->durations = NULL;
}

void
metrics_observe(struct metrics *m, size_t route, uint64_t us)
{
	size_t b = 0;

	if (route >= m->nroutes)
		return;
	while (b < METRICS_NBUCKETS - 1 && us > metrics_bucket_us[b])
		b++;
	COUNTER_ADD(&m->durations[route].buckets[b], 1);
	COUNTER_ADD(&m->durations[route].sum_us, us);
}

void
metrics_count(struct metrics *m, size_t route, int status)
{
	size_t i = METRICS_OTHER;

	if (route >= m->nroutes)
		return;
	if (status == 0)
		i = METRICS_ABORTED;
	for (size_t k = 0; k < METRICS_OTHER && status != 0; k++)
		if (codes[k] == status) {
			i = k;
			break;
		}
	COUNTER_ADD(&m->requests[route][i], 1);
}

int
metrics_code(size_t i)
{
	return i < METRICS_OTHER ? codes[i] : 0;
}
