/* Unit tests for src/lib/activation.c: which passed fds are adopted under
 * which name, when the variables are ignored, and that they are unset. The
 * sockets are put at fds 3 and 4, where a service manager puts them. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>

#include "activation.h"
#include "config.h"
#include "listener.h"

/* Listening sockets at fds 3 .. 3+n-1, and the variables naming them. */
static void
pass(unsigned n, const char *names, int pid)
{
	struct config_addr addr = { "127.0.0.1", "0" };
	char err[256], buf[32];

	for (unsigned i = 0; i < n; i++) {
		int fd = listener_open(&addr, LISTENER_ALONE, err, sizeof(err));
		assert_true(fd >= 0);
		if (fd != 3 + (int)i) {
			assert_int_equal(dup2(fd, 3 + (int)i), 3 + (int)i);
			close(fd);
		}
	}
	snprintf(buf, sizeof(buf), "%d", pid);
	setenv("LISTEN_PID", buf, 1);
	snprintf(buf, sizeof(buf), "%u", n);
	setenv("LISTEN_FDS", buf, 1);
	if (names != NULL)
		setenv("LISTEN_FDNAMES", names, 1);
	else
		unsetenv("LISTEN_FDNAMES");
}

static void
assert_unset(void)
{
	assert_null(getenv("LISTEN_PID"));
	assert_null(getenv("LISTEN_FDS"));
	assert_null(getenv("LISTEN_FDNAMES"));
}

static void
test_names_sort_the_sockets(void **state)
{
	struct activation a;
	char err[256];

	(void)state;
	pass(2, "admin:http", (int)getpid());
	assert_int_equal(activation_take(&a, err, sizeof(err)), 0);
	assert_int_equal(a.nhttp, 1);
	assert_int_equal(a.http[0], 4);
	assert_int_equal(a.admin, 3);
	assert_true(fcntl(3, F_GETFD) & FD_CLOEXEC);
	assert_unset();
	activation_close(&a);
	assert_int_equal(a.admin, -1);
}

static void
test_single_socket_is_http_whatever_its_name(void **state)
{
	static const char *const names[] = { NULL, "", "graced.socket" };
	struct activation a;
	char err[256];

	(void)state;
	for (size_t i = 0; i < 3; i++) {
		pass(1, names[i], (int)getpid());
		assert_int_equal(activation_take(&a, err, sizeof(err)), 0);
		assert_int_equal(a.nhttp, 1);
		assert_int_equal(a.http[0], 3);
		assert_int_equal(a.admin, -1);
		activation_close(&a);
	}
}

static void
test_another_pid_is_ignored(void **state)
{
	struct activation a;
	char err[256];

	(void)state;
	pass(1, "http", (int)getpid() + 1);
	assert_int_equal(activation_take(&a, err, sizeof(err)), 0);
	assert_int_equal(a.nhttp, 0);
	assert_int_equal(a.admin, -1);
	assert_unset();
	/* Not ours: left open, as it was. */
	assert_true(fcntl(3, F_GETFD) >= 0);
	close(3);
}

static void
test_unknown_name_and_second_admin_refused(void **state)
{
	static const char *const names[] = { "http:metrics", "admin:admin" };
	struct activation a;
	char err[256];

	(void)state;
	for (size_t i = 0; i < 2; i++) {
		pass(2, names[i], (int)getpid());
		assert_int_equal(
		    activation_take(&a, err, sizeof(err)), -EINVAL);
		assert_non_null(strstr(err, "LISTEN_FDNAMES"));
		assert_unset();
		activation_close(&a);
		close(4);
	}
}

static void
test_not_listening_refused(void **state)
{
	struct activation a;
	char err[256];
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	(void)state;
	pass(0, NULL, (int)getpid());
	if (fd != 3) {
		assert_int_equal(dup2(fd, 3), 3);
		close(fd);
	}
	setenv("LISTEN_FDS", "1", 1);
	assert_int_equal(activation_take(&a, err, sizeof(err)), -ENOTSOCK);
	assert_non_null(strstr(err, "not a listening stream socket"));
	activation_close(&a);
	close(3);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_names_sort_the_sockets),
		cmocka_unit_test(test_single_socket_is_http_whatever_its_name),
		cmocka_unit_test(test_another_pid_is_ignored),
		cmocka_unit_test(test_unknown_name_and_second_admin_refused),
		cmocka_unit_test(test_not_listening_refused),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
