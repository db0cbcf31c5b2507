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
    const char *token, double timeout, int *status, char *body, size_t bodylen)
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
	/* Read until the status line is complete, or with body wanted until
	 * the server closes (the request said Connection: close). */
	while (got < sizeof(buf) - 1 &&
	    (body != NULL || memchr(buf, '\n', got) == NULL)) {
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
		if (n == 0)
			break;
		got += (size_t)n;
	}
	buf[got] = '\0';
	if (got == 0 || memchr(buf, '\n', got) == NULL) {
		rc = -ECONNRESET;
		goto out;
	}
	if (sscanf(buf, "HTTP/1.%*d %d", status) != 1) {
		rc = -EPROTO;
		goto out;
	}
	if (body != NULL) {
		const char *start = strstr(buf, "\r\n\r\n");
		snprintf(body, bodylen, "%s", start ? start + 4 : "");
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
#define UPGRADE_USAGE                                                    \
	"usage: graced upgrade [--admin HOST:PORT] [--timeout S] "       \
	"[--token-file PATH]\n"                                          \
	"Starts the next generation from the same executable path and "  \
	"waits until it\nserves (exit 0) or the upgrade is rolled back " \
	"(exit 1, with the reason).\n"

/* What `graced drain` and `graced upgrade` share: the admin listener
 * (default $GRACED_ADMIN_LISTEN or 127.0.0.1:8081), the token file and
 * the timeout. */
struct admin_call {
	const char *cmd;   /* "drain", "upgrade" */
	const char *usage; /* its usage text */
	const char *admin;
	const char *token_file;
	double timeout;
	int wait; /* --wait (drain only) */
};

/* Parses the flags. 0, 1 after --help (exit 0), or -1 (exit 2). */
static int
admin_args(struct admin_call *c, int argc, char **argv)
{
	c->admin = getenv("GRACED_ADMIN_LISTEN");
	c->token_file = getenv("GRACED_ADMIN_TOKEN_FILE");
	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--wait") == 0 &&
		    strcmp(c->cmd, "drain") == 0) {
			c->wait = 1;
		} else if (strcmp(argv[i], "-h") == 0 ||
		    strcmp(argv[i], "--help") == 0) {
			printf("%s", c->usage);
			return 1;
		} else if (strcmp(argv[i], "--admin") == 0 && i + 1 < argc) {
			c->admin = argv[++i];
		} else if (strcmp(argv[i], "--token-file") == 0 &&
		    i + 1 < argc) {
			c->token_file = argv[++i];
		} else if (strcmp(argv[i], "--timeout") == 0 && i + 1 < argc) {
			if (parse_timeout(argv[++i], &c->timeout) < 0)
				return -1;
		} else {
			fprintf(stderr,
			    "graced %s: unexpected argument '%s'\n%s", c->cmd,
			    argv[i], c->usage);
			return -1;
		}
	}
	return 0;
}

/* POSTs to path on the admin listener. Returns client_request's result,
 * or 2 (bad --admin) or 1 (unreadable token file) with the reason
 * printed. */
static int
admin_post(const struct admin_call *c, const char *path, struct client_url *u,
    int *status, char *body, size_t bodylen)
{
	struct config_addr addr;
	char *token = NULL, err[PATH_MAX + 128];
	int rc;

	if (config_parse_addr(c->admin ? c->admin : "127.0.0.1:8081", &addr) <
	    0) {
		fprintf(stderr, "graced %s: --admin: '%s' is not HOST:PORT\n",
		    c->cmd, c->admin);
		return 2;
	}
	/* The same file and rules as the server's --admin-token-file. */
	if (c->token_file != NULL && c->token_file[0] != '\0' &&
	    admin_token_read(c->token_file, &token, err, sizeof(err)) < 0) {
		fprintf(stderr, "graced %s: --token-file: %s\n", c->cmd, err);
		return 1;
	}
	/* An admin listener on the wildcard address is reached on loopback. */
	if (strcmp(addr.host, "0.0.0.0") == 0)
		strcpy(addr.host, "127.0.0.1");
	else if (strcmp(addr.host, "::") == 0)
		strcpy(addr.host, "::1");
	strcpy(u->host, addr.host);
	strcpy(u->port, addr.port);
	strcpy(u->path, path);
	rc =
	    client_request(u, "POST", token, c->timeout, status, body, bodylen);
	free(token);
	return rc;
}

int
client_drain(int argc, char **argv)
{
	struct admin_call c = { "drain", DRAIN_USAGE, NULL, NULL, 60, 0 };
	struct client_url u;
	int status = 0, rc = admin_args(&c, argc, argv);

	if (rc != 0)
		return rc < 0 ? 2 : 0;
	rc = admin_post(&c, c.wait ? "/admin/drain?wait=1" : "/admin/drain", &u,
	    &status, NULL, 0);
	if (rc > 0)
		return rc;
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
	printf("graced drain: %s\n", c.wait ? "listeners closed" : "draining");
	return 0;
}

int
client_upgrade(int argc, char **argv)
{
	struct admin_call c = { "upgrade", UPGRADE_USAGE, NULL, NULL, 60, 0 };
	struct client_url u;
	char body[1024];
	json_t *reply, *why;
	int status = 0, rc = admin_args(&c, argc, argv);

	if (rc != 0)
		return rc < 0 ? 2 : 0;
	rc = admin_post(&c, "/admin/upgrade", &u, &status, body, sizeof(body));
	if (rc > 0)
		return rc;
	if (rc < 0) {
		fprintf(stderr, "graced upgrade: %s:%s: %s\n", u.host, u.port,
		    rc == -ETIMEDOUT ? "no answer within --timeout" :
		                       strerror(-rc));
		return 1;
	}
	reply = json_loads(body, 0, NULL);
	if (status == 200) {
		printf("graced upgrade: generation %lld serves (pid %lld)\n",
		    (long long)json_integer_value(
		        json_object_get(reply, "generation")),
		    (long long)json_integer_value(
		        json_object_get(reply, "pid")));
		json_decref(reply);
		return 0;
	}
	why = json_object_get(reply, "error");
	fprintf(stderr, "graced upgrade: %s:%s answered %d: %s\n", u.host,
	    u.port, status,
	    json_is_string(why) ? json_string_value(why) : body);
	json_decref(reply);
	return 1;
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
	rc = client_request(&u, "GET", NULL, timeout, &status, NULL, 0);
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
