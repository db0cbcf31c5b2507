/* Small helpers shared by the library files. */
#ifndef GRACED_UTIL_H
#define GRACED_UTIL_H

#include <stdint.h>
#include <time.h>

/* Milliseconds on the monotonic clock. */
static inline uint64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Microseconds on the monotonic clock. */
static inline uint64_t
now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

static inline struct timeval
seconds_tv(double s)
{
	struct timeval tv;

	tv.tv_sec = (time_t)s;
	tv.tv_usec = (suseconds_t)((s - (double)tv.tv_sec) * 1e6);
	return tv;
}

/* Counters written by one thread and read by others: a relaxed atomic load
 * and store, no locked read-modify-write on the hot path. */
#define COUNTER_ADD(p, n)                                                   \
	__atomic_store_n((p), __atomic_load_n((p), __ATOMIC_RELAXED) + (n), \
	    __ATOMIC_RELAXED)
#define COUNTER_GET(p) __atomic_load_n((p), __ATOMIC_RELAXED)
/* Flags and states handed from one thread to another. */
#define SHARED_SET(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)
#define SHARED_GET(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)

#endif
