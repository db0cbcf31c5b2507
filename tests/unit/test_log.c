/* Unit tests for src/lib/log.c: JSON escaping of client bytes, the line
 * builder, the writer thread and what it does when the sink stalls. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <cmocka.h>
#include <jansson.h>

#include "graced.h"
#include "log.h"
#include "util.h"

static void
check_escape(const char *in, size_t len, const char *want)
{
	char out[256];
	size_t n = log_escape(out, sizeof(out), in, len);

	out[n] = '\0';
	assert_string_equal(out, want);
}

static void
test_escape_quotes_backslashes_controls(void **state)
{
	(void)state;
	check_escape("plain /path?q=1", 15, "plain /path?q=1");
	check_escape("a\"b\\c", 5, "a\\\"b\\\\c");
	check_escape("\n\r\t\x01\x1f\x7f", 6,
	    "\\u000a\\u000d\\u0009\\u0001\\u001f\\u007f");
	check_escape("nul\0x", 5, "nul\\u0000x");
}

static void
test_escape_utf8(void **state)
{
	(void)state;
	/* Valid sequences pass through whole. */
	check_escape("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", 14,
	    "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
	/* Stray continuation, overlong, surrogate, cut short, out of range. */
	check_escape("\x80", 1, "\\ufffd");
	check_escape("\xc0\xaf", 2, "\\ufffd\\ufffd");
	check_escape("\xed\xa0\x80", 3, "\\ufffd\\ufffd\\ufffd");
	check_escape("\xe2\x82", 2, "\\ufffd\\ufffd");
	check_escape("\xf5\x80\x80\x80", 4, "\\ufffd\\ufffd\\ufffd\\ufffd");
	check_escape("\xff", 1, "\\ufffd");
}

static void
test_escape_never_cuts_an_escape(void **state)
{
	char out[8];

	(void)state;
	/* "ab" fits, the 6-byte escape of \n would not. */
	assert_int_equal(log_escape(out, 7, "ab\ncd", 5), 2);
	assert_int_equal(log_escape(out, 8, "ab\ncd", 5), 8);
	/* A 3-byte UTF-8 character is not split either. */
	assert_int_equal(log_escape(out, 3, "a\xe2\x82\xac", 4), 1);
}

static char tmpdir[64];

static char *
path_in_tmp(const char *name)
{
	static char path[128];

	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	return path;
}

static struct graced_config *
config_logging_to(const char *path)
{
	struct graced_config *cfg = graced_config_new();
	char err[256];

	assert_non_null(cfg);
	assert_int_equal(
	    graced_config_set(cfg, "log-file", path, err, sizeof(err)), 0);
	return cfg;
}

static json_t *
read_line(FILE *f)
{
	char buf[8192];
	json_error_t jerr;

	assert_non_null(fgets(buf, sizeof(buf), f));
	assert_int_equal(buf[strlen(buf) - 1], '\n');
	return json_loads(buf, 0, &jerr);
}

/* Lines built by hand and through jansson both come out whole, in order,
 * and parse back to what went in. */
static void
test_writer_writes_valid_lines(void **state)
{
	struct graced_config *cfg = config_logging_to(path_in_tmp("log"));
	const char hostile[] = "ua\"\\\n\xff\xc3\xa9";
	struct log_line l;
	json_t *j;
	FILE *f;

	(void)state;
	assert_int_equal(log_setup(cfg), 0);
	log_line_begin(&l, "request", now_us());
	log_line_str(&l, "user_agent", hostile, sizeof(hostile) - 1);
	log_line_uint(&l, "status", 200);
	log_line_ms(&l, "ms", 1234);
	log_line_end(&l);
	graced_log("other", json_pack("{s:i}", "n", 7));
	log_close();
	graced_config_free(cfg);

	f = fopen(path_in_tmp("log"), "r");
	assert_non_null(f);
	j = read_line(f);
	assert_non_null(j);
	assert_string_equal(
	    json_string_value(json_object_get(j, "event")), "request");
	assert_string_equal(json_string_value(json_object_get(j, "user_agent")),
	    "ua\"\\\n\xef\xbf\xbd\xc3\xa9");
	assert_int_equal(json_integer_value(json_object_get(j, "status")), 200);
	assert_true(json_real_value(json_object_get(j, "ms")) == 1.234);
	assert_int_equal(
	    strlen(json_string_value(json_object_get(j, "ts"))), 24);
	json_decref(j);
	j = read_line(f);
	assert_non_null(j);
	assert_int_equal(json_integer_value(json_object_get(j, "n")), 7);
	json_decref(j);
	fclose(f);
	unlink(path_in_tmp("log"));
}

/* A value longer than the line is cut inside the string, and the line
 * stays valid JSON. */
static void
test_long_value_is_cut_not_the_line(void **state)
{
	struct log_line l;
	char big[3 * LOG_LINE_MAX];
	json_error_t jerr;
	const char *path;
	json_t *j;

	(void)state;
	memset(big, '"', sizeof(big));
	log_line_begin(&l, "request", now_us());
	log_line_str(&l, "path", big, sizeof(big));
	log_line_uint(&l, "status", 200);
	assert_true(l.len <= LOG_LINE_MAX - 2);
	l.buf[l.len++] = '}';
	j = json_loadb(l.buf, l.len, 0, &jerr);
	assert_non_null(j);
	/* The path fills the line with whole escapes (each quote two
	 * bytes), and the field that had no room left is left out. */
	path = json_string_value(json_object_get(j, "path"));
	assert_non_null(path);
	assert_true(strlen(path) > LOG_LINE_MAX / 2 - 64);
	assert_int_equal(strspn(path, "\""), strlen(path));
	assert_null(json_object_get(j, "status"));
	json_decref(j);
}

/* A FIFO nobody reads: lines are dropped and counted instead of blocking
 * the caller, and the stop gives up after its bound. */
static void
test_stalled_sink_drops_and_stop_is_bounded(void **state)
{
	char *fifo = path_in_tmp("fifo");
	struct graced_config *cfg;
	uint64_t before = log_dropped(), start;
	int rfd;

	(void)state;
	assert_int_equal(mkfifo(fifo, 0600), 0);
	rfd = open(fifo, O_RDONLY | O_NONBLOCK);
	assert_true(rfd >= 0);
	cfg = config_logging_to(fifo);
	assert_int_equal(log_setup(cfg), 0);
	start = now_ms();
	for (int i = 0; i < 20000; i++) {
		struct log_line l;
		log_line_begin(&l, "request", now_us());
		log_line_str(&l, "path", "/some/path/to/fill/the/pipe", 27);
		log_line_uint(&l, "i", (uint64_t)i);
		log_line_end(&l);
	}
	/* 20000 lines of about 100 bytes: more than the pipe and the queue
	 * hold, and never a wait. */
	assert_true(now_ms() - start < 2000);
	assert_true(log_dropped() > before);
	start = now_ms();
	log_close();
	assert_true(now_ms() - start < LOG_FLUSH_MS + 1000);
	graced_config_free(cfg);
	close(rfd);
	unlink(fifo);
}

static int
file_has(const char *path, const char *needle)
{
	char line[LOG_LINE_MAX];
	FILE *f = fopen(path, "r");
	int found = 0;

	while (f != NULL && !found && fgets(line, sizeof(line), f) != NULL)
		found = strstr(line, needle) != NULL;
	if (f != NULL)
		fclose(f);
	return found;
}

/* SIGHUP after the reader of a FIFO went away: the writer leaves the
 * stalled FIFO for the reopened file instead of waiting on it for ever. */
static void
test_reopen_leaves_a_stalled_sink(void **state)
{
	char *path = path_in_tmp("stall-then-file");
	struct graced_config *cfg;
	uint64_t deadline;
	int rfd;

	(void)state;
	assert_int_equal(mkfifo(path, 0600), 0);
	rfd = open(path, O_RDONLY | O_NONBLOCK);
	assert_true(rfd >= 0);
	cfg = config_logging_to(path);
	assert_int_equal(log_setup(cfg), 0);
	for (int i = 0; i < 2000; i++)
		graced_log("filler", json_pack("{s:i}", "i", i));
	unlink(path);
	assert_int_equal(log_reopen(), 0);
	graced_log("after_reopen", NULL);
	deadline = now_ms() + 3000;
	while (!file_has(path, "after_reopen") && now_ms() < deadline)
		usleep(10000);
	assert_true(file_has(path, "after_reopen"));
	log_close();
	graced_config_free(cfg);
	close(rfd);
	unlink(path);
}

static int
setup(void **state)
{
	(void)state;
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/graced-test-log-XXXXXX");
	return mkdtemp(tmpdir) == NULL ? -1 : 0;
}

static int
teardown(void **state)
{
	(void)state;
	return rmdir(tmpdir);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_escape_quotes_backslashes_controls),
		cmocka_unit_test(test_escape_utf8),
		cmocka_unit_test(test_escape_never_cuts_an_escape),
		cmocka_unit_test(test_writer_writes_valid_lines),
		cmocka_unit_test(test_long_value_is_cut_not_the_line),
		cmocka_unit_test(test_stalled_sink_drops_and_stop_is_bounded),
		cmocka_unit_test(test_reopen_leaves_a_stalled_sink),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
