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

int
metrics_init(struct metrics *m, size_t nroutes)
{
	m->requests = calloc(nroutes, sizeof(*m->requests));
	m->nroutes = nroutes;
	return m->requests == NULL ? -ENOMEM : 0;
}

void
metrics_free(struct metrics *m)
{
	free(m->requests);
	m->requests = NULL;
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
