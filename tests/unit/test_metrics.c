/* Unit tests for src/lib/metrics.c: requests counted by route and status,
 * with "other" and "aborted". The connection counters beside them (accepted,
 * cut off, rejected) are conn.c's to write: test_conn.c checks them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <sys/time.h>
#include <cmocka.h>

#include "metrics.h"
#include "util.h"

/* The sum of every counter of every route. */
static uint64_t
total(const struct metrics *m)
{
	uint64_t n = 0;

	for (size_t r = 0; r < m->nroutes; r++)
		for (size_t i = 0; i < METRICS_NCODES; i++)
			n += COUNTER_GET(&m->requests[r][i]);
	return n;
}

static void
test_codes_have_their_own_counter(void **state)
{
	struct metrics m;

	(void)state;
	assert_int_equal(metrics_init(&m, 3), 0);
	assert_int_equal(m.nroutes, 3);
	assert_int_equal(total(&m), 0);
	/* Every known code lands in its own slot, on its own route. */
	for (size_t i = 0; i < METRICS_OTHER; i++) {
		int code = metrics_code(i);
		assert_true(code >= 200 && code <= 599);
		metrics_count(&m, i % 3, code);
		assert_int_equal(m.requests[i % 3][i], 1);
		assert_int_equal(total(&m), i + 1);
	}
	/* The codes are distinct, so none steals another's slot. */
	for (size_t i = 0; i < METRICS_OTHER; i++)
		for (size_t k = i + 1; k < METRICS_OTHER; k++)
			assert_int_not_equal(metrics_code(i), metrics_code(k));
	metrics_count(&m, 1, 200);
	metrics_count(&m, 1, 200);
	assert_int_equal(m.requests[1][0], 2);
	assert_int_equal(m.requests[0][0], 1);
	metrics_free(&m);
	assert_null(m.requests);
}

static void
test_other_aborted_and_unknown_routes(void **state)
{
	struct metrics m;

	(void)state;
	assert_int_equal(metrics_init(&m, 2), 0);
	assert_int_equal(metrics_code(METRICS_OTHER), 0);
	assert_int_equal(metrics_code(METRICS_ABORTED), 0);
	assert_int_equal(metrics_code(METRICS_NCODES + 5), 0);
	metrics_count(&m, 0, 418);
	metrics_count(&m, 0, 599);
	metrics_count(&m, 0, 100);
	assert_int_equal(m.requests[0][METRICS_OTHER], 3);
	/* No reply at all: aborted, never "other". */
	metrics_count(&m, 1, 0);
	assert_int_equal(m.requests[1][METRICS_ABORTED], 1);
	assert_int_equal(m.requests[1][METRICS_OTHER], 0);
	assert_int_equal(total(&m), 4);
	/* A route id the table does not have is ignored, not written past
	 * the end (ASan and valgrind would see it). */
	metrics_count(&m, 2, 200);
	metrics_count(&m, (size_t)-1, 200);
	assert_int_equal(total(&m), 4);
	metrics_free(&m);
	/* Freeing twice is harmless. */
	metrics_free(&m);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_codes_have_their_own_counter),
		cmocka_unit_test(test_other_aborted_and_unknown_routes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
