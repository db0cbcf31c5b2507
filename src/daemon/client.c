/* `graced drain` and `graced probe`: one request each over a plain socket,
 * bounded by a timeout, so they work in images without curl. */
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "admin.h"
#include "client.h"
#include "config.h"
#include "graced.h"

int
client_parse_url(const char *url, struct client_url *out)
{
	struct config_addr addr;
	const char *hostport = url, *slash;
	char buf[300];
	size_t len;

	if (strncmp(url, "http://", 7) != 0)
		return -EINVAL;
	hostport = url + 7;
	slash = strchr(hostport, '/');
	len = slash ? (size_t)(slash - hostport) : strlen(hostport);
	if (len == 0 || len + 4 >= sizeof(buf))
		return -EINVAL;
	memcpy(buf, hostport, len);
	buf[len] = '\0';
	if (strchr(buf, ':') == NULL ||
	    (buf[0] == '[' && strstr(buf, "]:") == NULL))
		strcat(buf, ":80");
	if (config_parse_addr(buf, &addr) < 0)
		return -EINVAL;
	if (strlen(slash ? slash : "/") >= sizeof(out->path))
		return -EINVAL;
	strcpy(out->host, addr.host);
	strcpy(out->port, addr.port);
	strcpy(out->path, slash ? slash : "/");
	return 0;
}

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Waits for events on fd until deadline; 0, or -ETIMEDOUT. */
static int
wait_fd(int fd, short events, double deadline)
{
	for (;;) {
		double left = deadline - now_s();
		struct pollfd p = { fd, events, 0 };
		int n;
		if (left <= 0)
			return -ETIMEDOUT;
		n = poll(&p, 1, (int)(left * 1000) + 1);
		if (n > 0)
			return 0;
		if (n < 0 && errno != EINTR)
			return -errno;
	}
}

int
client_request(const struct client_url *u, const char *method,
    const char *token, double timeout, int *status)
{
	struct addrinfo hints, *res = NULL;
	double deadline = now_s() + timeout;
	char buf[4096];
	size_t got = 0;
	int fd = -1, rc, soerr = 0;
	socklen_t slen = sizeof(soerr);

	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV;
	if (getaddrinfo(u->host, u->port, &hints, &res) != 0)
		return -EHOSTUNREACH;
	fd = socket(
	    res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		rc = -errno;
		goto out;
	}
	if (connect(fd, res->ai_addr, res->ai_addrlen) < 0 &&
	    errno != EINPROGRESS) {
		rc = -errno;
		goto out;
	}
	rc = wait_fd(fd, POLLOUT, deadline);
	if (rc < 0)
		goto out;
	getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &slen);
	if (soerr != 0) {
		rc = -soerr;
		goto out;
	}
	snprintf(buf, sizeof(buf),
	    "%s %s HTTP/1.1\r\nHost: %s:%s\r\n"
	    "User-Agent: graced\r\nContent-Length: 0\r\nConnection: close\r\n"
	    "%s%s%s\r\n",
	    method, u->path, u->host, u->port,
	    token ? "Authorization: Bearer " : "", token ? token : "",
	    token ? "\r\n" : "");
	if (send(fd, buf, strlen(buf), MSG_NOSIGNAL) < 0) {
		rc = -errno;
		goto out;
	}
	/* Read until the status line is complete. */
	while (memchr(buf, '\n', got) == NULL && got < sizeof(buf) - 1) {
		ssize_t n;
		rc = wait_fd(fd, POLLIN, deadline);
		if (rc < 0)
			goto out;
		n = recv(fd, buf + got, sizeof(buf) - 1 - got, 0);
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n < 0) {
			rc = -errno;
			goto out;
		}
		if (n == 0) {
			rc = -ECONNRESET;
			goto out;
		}
		got += (size_t)n;
	}
	buf[got] = '\0';
	if (sscanf(buf, "HTTP/1.%*d %d", status) != 1) {
		rc = -EPROTO;
		goto out;
	}
	rc = 0;
out:
	if (fd >= 0)
		close(fd);
	freeaddrinfo(res);
	return rc;
}

static int
parse_timeout(const char *s, double *out)
{
	if (config_parse_seconds(s, out) < 0 || *out <= 0 || *out > 86400) {
		fprintf(stderr,
		    "graced: --timeout: '%s' is not a number of "
		    "seconds\n",
		    s);
		return -EINVAL;
	}
	return 0;
}

#define DRAIN_USAGE                                                       \
	"usage: graced drain [--admin HOST:PORT] [--wait] [--timeout S] " \
	"[--token-file PATH]\n"                                           \
	"--token-file defaults to $GRACED_ADMIN_TOKEN_FILE; its bearer "  \
	"token is sent\nto an instance started with --admin-token-file.\n"

int
client_drain(int argc, char **argv)
{
	const char *admin = getenv("GRACED_ADMIN_LISTEN");
	const char *token_file = getenv("GRACED_ADMIN_TOKEN_FILE");
	struct config_addr addr;
	struct client_url u;
	char *token = NULL, err[PATH_MAX + 128];
	double timeout = 60;
	int wait = 0, status = 0, rc;

	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--wait") == 0) {
			wait = 1;
		} else if (strcmp(argv[i], "-h") == 0 ||
		    strcmp(argv[i], "--help") == 0) {
			printf(DRAIN_USAGE);
			return 0;
		} else if (strcmp(argv[i], "--admin") == 0 && i + 1 < argc) {
			admin = argv[++i];
		} else if (strcmp(argv[i], "--token-file") == 0 &&
		    i + 1 < argc) {
			token_file = argv[++i];
		} else if (strcmp(argv[i], "--timeout") == 0 && i + 1 < argc) {
			if (parse_timeout(argv[++i], &timeout) < 0)
				return 2;
		} else {
			fprintf(stderr,
			    "graced drain: unexpected argument "
			    "'%s'\n" DRAIN_USAGE,
			    argv[i]);
			return 2;
		}
	}
	if (config_parse_addr(admin ? admin : "127.0.0.1:8081", &addr) < 0) {
		fprintf(stderr,
		    "graced drain: --admin: '%s' is not "
		    "HOST:PORT\n",
		    admin);
		return 2;
	}
	/* The same file and rules as the server's --admin-token-file. */
	if (token_file != NULL && token_file[0] != '\0' &&
	    admin_token_read(token_file, &token, err, sizeof(err)) < 0) {
		fprintf(stderr, "graced drain: --token-file: %s\n", err);
		return 1;
	}
	/* An admin listener on the wildcard address is reached on loopback. */
	if (strcmp(addr.host, "0.0.0.0") == 0)
		strcpy(addr.host, "127.0.0.1");
	else if (strcmp(addr.host, "::") == 0)
		strcpy(addr.host, "::1");
	strcpy(u.host, addr.host);
	strcpy(u.port, addr.port);
	strcpy(u.path, wait ? "/admin/drain?wait=1" : "/admin/drain");
	rc = client_request(&u, "POST", token, timeout, &status);
	free(token);
	if (rc == -ECONNREFUSED || rc == -ECONNRESET) {
		/* Gone already, or exited while we waited: nothing to do. */
		printf("graced drain: instance at %s:%s is gone\n", u.host,
		    u.port);
		return 0;
	}
	if (rc < 0) {
		fprintf(stderr, "graced drain: %s:%s: %s\n", u.host, u.port,
		    strerror(-rc));
		return 1;
	}
	if (status < 200 || status > 299) {
		fprintf(stderr, "graced drain: %s:%s answered %d\n", u.host,
		    u.port, status);
		return 1;
	}
	printf("graced drain: %s\n", wait ? "listeners closed" : "draining");
	return 0;
}

int
client_probe(int argc, char **argv)
{
	const char *url = "http://127.0.0.1:8080/healthz";
	struct client_url u;
	double timeout = 2;
	int status = 0, rc;

	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--timeout") == 0 && i + 1 < argc) {
			if (parse_timeout(argv[++i], &timeout) < 0)
				return 2;
		} else if (strncmp(argv[i], "http://", 7) == 0) {
			url = argv[i];
		} else {
			fprintf(stderr,
			    "graced probe: unexpected argument "
			    "'%s'\nusage: graced probe [http://HOST:PORT/PATH] "
			    "[--timeout S]\n",
			    argv[i]);
			return 2;
		}
	}
	if (client_parse_url(url, &u) < 0) {
		fprintf(
		    stderr, "graced probe: '%s' is not an http:// URL\n", url);
		return 2;
	}
	rc = client_request(&u, "GET", NULL, timeout, &status);
	if (rc < 0) {
		fprintf(stderr, "graced probe: %s: %s\n", url, strerror(-rc));
		return 1;
	}
	if (status < 200 || status > 299) {
		fprintf(stderr, "graced probe: %s answered %d\n", url, status);
		return 1;
	}
	return 0;
}
