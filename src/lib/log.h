/* Process-wide log stream: JSON lines (or text) on stderr or a file, written
 * by a thread of its own so that a stalled reader never blocks a loop. */
#ifndef GRACED_LOG_H
#define GRACED_LOG_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>
#include "config.h"

/* The longest line; longer field values are cut (never inside an escape). */
#define LOG_LINE_MAX 4096

/* One line being built on the caller's stack: no allocation. */
struct log_line {
	size_t len;
	char buf[LOG_LINE_MAX];
};

/* Sets format and destination and starts the writer thread (once per
 * process; every call needs its log_close). Returns 0 or a negative errno;
 * the writer runs in either case. */
int log_setup(const struct graced_config *cfg);
/* Reopens the log file (no-op on stderr); 0 or a negative errno. The writer
 * switches to the new file between two batches. */
int log_reopen(void);
/* The last call stops the writer: what is queued is written for up to
 * LOG_FLUSH_MS, the rest is dropped and counted. Lines without a writer are
 * written at once if the sink has room, else dropped and counted. */
void log_close(void);
#define LOG_FLUSH_MS 1000
/* Lines dropped because the queue was full or the final flush timed out. */
uint64_t log_dropped(void);

/* Writes src (len bytes, any bytes) into dst as the inside of a JSON string:
 * quotes, backslashes and control characters escaped, invalid UTF-8 bytes
 * replaced by \ufffd. Stops before an escape that would pass cap. Returns
 * the bytes written. */
size_t log_escape(char *dst, size_t cap, const char *src, size_t len);

/* Building a line: begin, fields, end (which queues it). mono_us is a
 * now_us() reading the caller already has; the timestamp comes from it. */
void log_line_begin(struct log_line *l, const char *event, uint64_t mono_us);
/* A string field; val may be NULL (then nothing is added). */
void log_line_str(
    struct log_line *l, const char *key, const char *val, size_t len);
void log_line_uint(struct log_line *l, const char *key, uint64_t v);
/* Microseconds written as milliseconds with three decimals. */
void log_line_ms(struct log_line *l, const char *key, uint64_t us);
void log_line_end(struct log_line *l);

/* Same as graced_log(); a short name for the library's own lines. */
#define log_event graced_log

#endif
