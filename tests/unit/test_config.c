/* Unit tests for src/lib/config.c and the daemon's flag parsing. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "config.h"
#include "graced.h"
#include "options.h"

static void
test_defaults(void **state)
{
	struct graced_config *cfg = graced_config_new();
	char err[256];

	(void)state;
	assert_non_null(cfg);
	assert_string_equal(graced_config_get(cfg, "listen"), "0.0.0.0:8080");
	assert_string_equal(
	    graced_config_get(cfg, "admin-listen"), "127.0.0.1:8081");
	assert_string_equal(graced_config_get(cfg, "drain-delay"), "5");
	assert_string_equal(graced_config_get(cfg, "shutdown-timeout"), "25");
	assert_string_equal(graced_config_get(cfg, "max-body"), "1048576");
	assert_string_equal(graced_config_get(cfg, "log-format"), "json");
	assert_null(graced_config_get(cfg, "nope"));
	assert_int_equal(graced_config_check(cfg, err, sizeof(err)), 0);
	graced_config_free(cfg);
}

static void
test_values_parse(void **state)
{
	struct graced_config *cfg = graced_config_new();
	char err[256];

	(void)state;
	assert_int_equal(
	    graced_config_set(cfg, "drain-delay", "0.25", err, sizeof(err)), 0);
	assert_true(cfg->drain_delay == 0.25);
	assert_int_equal(
	    graced_config_set(cfg, "max-body", "64K", err, sizeof(err)), 0);
	assert_int_equal(cfg->max_body, 65536);
	assert_int_equal(
	    graced_config_set(cfg, "listen", "[::1]:0", err, sizeof(err)), 0);
	assert_string_equal(cfg->listen.host, "::1");
	assert_string_equal(cfg->listen.port, "0");
	assert_string_equal(graced_config_get(cfg, "listen"), "[::1]:0");
	assert_int_equal(
	    graced_config_set(cfg, "access-log", "off", err, sizeof(err)), 0);
	assert_int_equal(cfg->access_log, 0);
	assert_int_equal(
	    graced_config_set(cfg, "log-format", "text", err, sizeof(err)), 0);
	assert_int_equal(cfg->log_format, CONFIG_LOG_TEXT);
	graced_config_free(cfg);
}

static void
expect_bad(const char *name, const char *value, const char *words)
{
	struct graced_config *cfg = graced_config_new();
	char err[256] = "";

	assert_int_equal(
	    graced_config_set(cfg, name, value, err, sizeof(err)), -EINVAL);
	/* The reason names the flag and says what is wrong. */
	assert_non_null(strstr(err, name));
	assert_non_null(strstr(err, words));
	graced_config_free(cfg);
}

static void
test_bad_values_name_the_flag(void **state)
{
	(void)state;
	expect_bad("drain-delay", "abc", "not a number");
	expect_bad("drain-delay", "", "not a number");
	expect_bad("drain-delay", "1s", "not a number");
	expect_bad("drain-delay", "nan", "not a number");
	expect_bad("drain-delay", "-1", "out of range");
	expect_bad("shutdown-timeout", "0", "out of range");
	expect_bad("max-body", "-1", "not a number");
	expect_bad("max-body", "10T", "not a number");
	expect_bad("max-body", "0", "out of range");
	expect_bad("max-connections", "1K", "not a number");
	expect_bad("workers", "257", "out of range");
	expect_bad("listen", "8080", "HOST:PORT");
	expect_bad("listen", ":8080", "HOST:PORT");
	expect_bad("listen", "localhost:99999", "HOST:PORT");
	expect_bad("listen", "::1:80", "HOST:PORT");
	expect_bad("listen", "[::1]80", "HOST:PORT");
	expect_bad("log-format", "xml", "json or text");
	expect_bad("access-log", "maybe", "on or off");
}

static void
test_unknown_option(void **state)
{
	struct graced_config *cfg = graced_config_new();
	char err[256];

	(void)state;
	assert_int_equal(
	    graced_config_set(cfg, "colour", "red", err, sizeof(err)), -ENOENT);
	graced_config_free(cfg);
}

static void
test_check_timeout_covers_delay(void **state)
{
	struct graced_config *cfg = graced_config_new();
	char err[256];

	(void)state;
	assert_int_equal(
	    graced_config_set(cfg, "drain-delay", "30", err, sizeof(err)), 0);
	assert_int_equal(graced_config_check(cfg, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "--shutdown-timeout"));
	assert_int_equal(
	    graced_config_set(cfg, "shutdown-timeout", "31", err, sizeof(err)),
	    0);
	assert_int_equal(graced_config_check(cfg, err, sizeof(err)), 0);
	assert_int_equal(graced_config_set(cfg, "admin-listen", "0.0.0.0:8080",
	                     err, sizeof(err)),
	    0);
	assert_int_equal(graced_config_check(cfg, err, sizeof(err)), -EINVAL);
	graced_config_free(cfg);
}

static void
test_options_flags_and_env(void **state)
{
	char *argv[] = { "--drain-delay", "1.5", "--spool=/tmp/x.jsonl",
		"--max-body=2M" };
	struct options o;
	char err[256];

	(void)state;
	setenv("GRACED_DRAIN_DELAY", "7", 1);
	setenv("GRACED_SHUTDOWN_TIMEOUT", "9", 1);
	assert_int_equal(options_parse(&o, 4, argv, err, sizeof(err)), 0);
	/* The flag wins over the environment. */
	assert_true(o.cfg->drain_delay == 1.5);
	assert_true(o.cfg->shutdown_timeout == 9);
	assert_int_equal(o.cfg->max_body, 2 * 1024 * 1024);
	assert_string_equal(o.spool, "/tmp/x.jsonl");
	options_free(&o);

	setenv("GRACED_DRAIN_DELAY", "soon", 1);
	assert_int_equal(options_parse(&o, 0, NULL, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "GRACED_DRAIN_DELAY"));
	options_free(&o);
	unsetenv("GRACED_DRAIN_DELAY");
	unsetenv("GRACED_SHUTDOWN_TIMEOUT");
}

static void
test_options_errors(void **state)
{
	char *unknown[] = { "--colour", "red" };
	char *missing[] = { "--listen" };
	char *stray[] = { "extra" };
	char *help[] = { "--help" };
	struct options o;
	char err[256], var[64];

	(void)state;
	assert_int_equal(
	    options_parse(&o, 2, unknown, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "--colour"));
	options_free(&o);
	assert_int_equal(
	    options_parse(&o, 1, missing, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "needs a value"));
	options_free(&o);
	assert_int_equal(
	    options_parse(&o, 1, stray, err, sizeof(err)), -EINVAL);
	options_free(&o);
	assert_int_equal(options_parse(&o, 1, help, err, sizeof(err)), 0);
	assert_int_equal(o.help, 1);
	options_free(&o);
	options_env_name("first-byte-grace", var, sizeof(var));
	assert_string_equal(var, "GRACED_FIRST_BYTE_GRACE");
}

/* What graced_config_get() prints parses back to the same value (found by
 * tests/fuzz/fuzz_config: "[[19]:80" was taken as host "[19"). */
static void
test_get_parses_back(void **state)
{
	static const char *const addrs[] = { "0.0.0.0:8080", "[::1]:80",
		"[fe80::1%eth0]:0", "localhost:1", "[[19]:80", "[a]]:80",
		"a]:80", "[:80", "x[y:80" };
	struct graced_config *cfg = graced_config_new();
	char err[256], got[300];

	(void)state;
	for (size_t i = 0; i < sizeof(addrs) / sizeof(addrs[0]); i++) {
		if (graced_config_set(
		        cfg, "listen", addrs[i], err, sizeof(err)) < 0)
			continue;
		snprintf(
		    got, sizeof(got), "%s", graced_config_get(cfg, "listen"));
		assert_int_equal(
		    graced_config_set(cfg, "listen", got, err, sizeof(err)), 0);
		assert_string_equal(graced_config_get(cfg, "listen"), got);
	}
	expect_bad("listen", "[[19]:80", "HOST:PORT");
	expect_bad("listen", "a]:80", "HOST:PORT");
	graced_config_free(cfg);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_values_parse),
		cmocka_unit_test(test_bad_values_name_the_flag),
		cmocka_unit_test(test_unknown_option),
		cmocka_unit_test(test_check_timeout_covers_delay),
		cmocka_unit_test(test_options_flags_and_env),
		cmocka_unit_test(test_options_errors),
		cmocka_unit_test(test_get_parses_back),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
