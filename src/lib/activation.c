/* Socket activation: the listeners another process passed (fds from 3,
 * LISTEN_FDS of them, for the process LISTEN_PID, named by LISTEN_FDNAMES),
 * sorted into "http" and "admin". A single fd with any other name, or
 * none, is "http": systemd names a socket after its unit unless the unit
 * says FileDescriptorName=. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "activation.h"
#include "listener.h"
#include "graced.h"
#include "log.h"

/* The first fd passed, as in sd_listen_fds(3). */
#define ACTIVATION_FD0 3

/* The n-th name of the colon-separated list (empty past its end). */
static void
name_at(const char *names, unsigned n, char *buf, size_t len)
{
	const char *end;

	while (names != NULL && n > 0) {
		names = strchr(names, ':');
		names = names ? names + 1 : NULL;
		n--;
	}
	if (names == NULL) {
		buf[0] = '\0';
		return;
	}
	end = strchr(names, ':');
	snprintf(buf, len, "%.*s",
	    (int)(end ? (size_t)(end - names) : strlen(names)), names);
}

/* The count passed to this process: 0 when the variables are absent, not
 * for this pid, or malformed (as sd_listen_fds does, they are ignored). */
static unsigned
passed_count(void)
{
	const char *pid = getenv("LISTEN_PID"), *fds = getenv("LISTEN_FDS");
	char *end;
	unsigned long n;

	if (pid == NULL || fds == NULL ||
	    strtol(pid, &end, 10) != (long)getpid() || *end != '\0')
		return 0;
	n = strtoul(fds, &end, 10);
	if (*end != '\0' || fds[0] == '\0')
		return 0;
	return (unsigned)n;
}

static void
log_adopted(const struct activation *a)
{
	json_t *http = json_array(), *ignored = json_array();
	char addr[300];

	for (unsigned i = 0; i < a->nhttp; i++) {
		listener_address(a->http[i], addr, sizeof(addr));
		json_array_append_new(http, json_string(addr));
	}
	/* The flags that would have bound them are not used. */
	if (a->nhttp > 0)
		json_array_append_new(ignored, json_string("--listen"));
	if (a->admin >= 0) {
		listener_address(a->admin, addr, sizeof(addr));
		json_array_append_new(ignored, json_string("--admin-listen"));
	}
	log_event("listeners_adopted",
	    json_pack("{s:o,s:s?,s:o}", "http", http, "admin",
	        a->admin >= 0 ? addr : NULL, "ignored", ignored));
}

int
activation_take(struct activation *a, char *err, size_t errlen)
{
	unsigned n = passed_count();
	const char *names = getenv("LISTEN_FDNAMES");
	char name[64];
	int rc = 0;

	a->nhttp = 0;
	a->admin = -1;
	a->owned = n > 0 && getenv("GRACED_LISTENERS_OWNED") != NULL &&
	    strcmp(getenv("GRACED_LISTENERS_OWNED"), "1") == 0;
	if (n > ACTIVATION_MAX) {
		snprintf(err, errlen, "LISTEN_FDS=%u: more than %d sockets", n,
		    ACTIVATION_MAX);
		rc = -EMFILE;
		goto out;
	}
	for (unsigned i = 0; i < n && rc == 0; i++) {
		int fd = ACTIVATION_FD0 + (int)i;

		name_at(names, i, name, sizeof(name));
		rc = listener_adopt(fd, err, errlen);
		if (rc < 0)
			break;
		if (strcmp(name, "admin") == 0 && a->admin < 0)
			a->admin = fd;
		else if (strcmp(name, "http") == 0 || n == 1 || name[0] == '\0')
			a->http[a->nhttp++] = fd;
		else {
			snprintf(err, errlen,
			    "LISTEN_FDNAMES: fd %d is named \"%s\", not "
			    "\"http\" or \"admin\" (once)",
			    fd, name);
			rc = -EINVAL;
		}
	}
	/* Sockets graced's own supervisor bound for it are not news. */
	if (rc == 0 && n > 0 && !a->owned)
		log_adopted(a);
out:
	/* The sockets stay open either way: another process may hold them
	 * with a queue, and our exit closes our copies. */
	unsetenv("LISTEN_PID");
	unsetenv("LISTEN_FDS");
	unsetenv("LISTEN_FDNAMES");
	unsetenv("GRACED_LISTENERS_OWNED");
	return rc;
}

void
activation_close(struct activation *a)
{
	for (unsigned i = 0; i < a->nhttp; i++)
		close(a->http[i]);
	if (a->admin >= 0)
		close(a->admin);
	a->nhttp = 0;
	a->admin = -1;
}
