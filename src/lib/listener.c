/* Listening sockets. Closing a listener resets whatever waits in its accept
 * queue, so a drain first stops new SYNs (a classic BPF filter; where the
 * kernel refuses one to unprivileged processes, a backlog of 0), accepts
 * until the queue is empty, and only then closes. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#ifdef HAVE_LINUX_FILTER_H
#include <linux/filter.h>
#endif
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "graced.h"
#include "listener.h"
#include "log.h"
#include "util.h"

int
listener_open(const struct config_addr *addr, enum listener_share share,
    char *err, size_t errlen)
{
	struct addrinfo hints, *res = NULL;
	int fd = -1, one = 1, rc;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	rc = getaddrinfo(addr->host, addr->port, &hints, &res);
	if (rc != 0) {
		snprintf(err, errlen, "listen %s:%s: %s", addr->host,
		    addr->port, gai_strerror(rc));
		return -EINVAL;
	}
	fd = socket(
	    res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		goto fail;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0)
		goto fail;
	if (share == LISTENER_JOIN &&
	    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0)
		goto fail;
	if (bind(fd, res->ai_addr, res->ai_addrlen) < 0)
		goto fail;
	/* The kernel makes the group at listen(): set after the exclusive
	 * bind, the flag lets this process's other sockets join it, and no
	 * other process's first socket can. */
	if (share == LISTENER_FIRST &&
	    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0)
		goto fail;
	if (listen(fd, SOMAXCONN) < 0)
		goto fail;
	freeaddrinfo(res);
	return fd;
fail:
	rc = -errno;
	snprintf(err, errlen, "listen %s:%s: %s", addr->host, addr->port,
	    strerror(errno));
	if (fd >= 0)
		close(fd);
	freeaddrinfo(res);
	return rc;
}

#ifdef HAVE_LINUX_FILTER_H
int
listener_filter_syns(int fd)
{
	/* The filter sees the TCP header: byte 13 holds the flags. Drop a
	 * segment with SYN set and ACK clear; pass everything else. */
	static struct sock_filter code[] = {
		BPF_STMT(BPF_LD | BPF_B | BPF_ABS, 13),
		BPF_STMT(BPF_ALU | BPF_AND | BPF_K, 0x12),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0x02, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, 0),
		BPF_STMT(BPF_RET | BPF_K, 0xffffffff),
	};
	struct sock_fprog prog = { sizeof(code) / sizeof(code[0]), code };

	if (setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof(prog)) <
	    0)
		return -errno;
	return 0;
}
#else
int
listener_filter_syns(int fd)
{
	/* No classic socket filters (the BSDs, macOS): the caller falls back
	 * to listener_shrink_backlog(). */
	(void)fd;
	return -EOPNOTSUPP;
}
#endif

int
listener_shrink_backlog(int fd)
{
	/* listen() again only sets the backlog. At 0 the queue counts as full
	 * while it holds anything, and the kernel drops new SYNs (clients
	 * retry them later); what is queued stays. */
	return listen(fd, 0) < 0 ? -errno : 0;
}

#ifdef HAVE_STRUCT_TCP_INFO_TCPI_UNACKED
int
listener_queue_len(int fd)
{
	struct tcp_info info;
	socklen_t len = sizeof(info);

	if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &len) < 0)
		return -errno;
	/* On a listening socket, tcpi_unacked is the accept queue's length. */
	return (int)info.tcpi_unacked;
}
#else
int
listener_queue_len(int fd)
{
	struct pollfd p = { fd, POLLIN, 0 };

	/* No portable way to read the length: a listening socket is readable
	 * while its accept queue holds a connection, so this says 1 for "one
	 * or more" and 0 for empty, which is all the drain asks. */
	if (poll(&p, 1, 0) < 0)
		return -errno;
	return (p.revents & POLLIN) != 0;
}
#endif

#ifdef HAVE_STRUCT_TCP_INFO_TCPI_UNACKED
/* The backlog of a listening socket: TCP_INFO's tcpi_sacked holds it there
 * (as tcpi_unacked holds the queue's length). */
static int
adopted_backlog(int fd)
{
	struct tcp_info info;
	socklen_t len = sizeof(info);

	if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &len) < 0)
		return 0;
	return (int)info.tcpi_sacked;
}
#else
static int
adopted_backlog(int fd)
{
	/* Unreadable: the backlog is set again, as if it were 0. */
	(void)fd;
	return 0;
}
#endif

int
listener_adopt(int fd, char *err, size_t errlen)
{
	int type = 0, accepting = 0, flags, rc;
	socklen_t len = sizeof(type), alen = sizeof(accepting);

	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0 ||
	    getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &accepting, &alen) < 0)
		goto fail;
	if (type != SOCK_STREAM || !accepting) {
		snprintf(
		    err, errlen, "fd %d is not a listening stream socket", fd);
		return -ENOTSOCK;
	}
	flags = fcntl(fd, F_GETFL);
	if (fcntl(fd, F_SETFD, FD_CLOEXEC) < 0 || flags < 0 ||
	    fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)
		goto fail;
#ifdef SO_DETACH_FILTER
	/* ENOENT: no filter attached, the usual case. */
	if (setsockopt(fd, SOL_SOCKET, SO_DETACH_FILTER, &type, sizeof(type)) <
	        0 &&
	    errno != ENOENT)
		goto fail;
#endif
	/* Undoes a backlog of 0 (listener_shrink_backlog), and only that: a
	 * backlog the socket's maker chose (systemd's Backlog=) stays. */
	if (adopted_backlog(fd) == 0 && listen(fd, LISTENER_ADOPT_BACKLOG) < 0)
		goto fail;
	return 0;
fail:
	rc = -errno;
	snprintf(err, errlen, "fd %d: %s", fd, strerror(errno));
	return rc;
}

void
listener_address(int fd, char *buf, size_t len)
{
	struct sockaddr_storage ss;
	socklen_t slen = sizeof(ss);
	char host[INET6_ADDRSTRLEN], port[8];

	if (getsockname(fd, (struct sockaddr *)&ss, &slen) < 0 ||
	    getnameinfo((struct sockaddr *)&ss, slen, host, sizeof(host), port,
	        sizeof(port), NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
		snprintf(buf, len, "?");
		return;
	}
	snprintf(buf, len, ss.ss_family == AF_INET6 ? "[%s]:%s" : "%s:%s", host,
	    port);
}

const char *const listener_errno_names[LISTENER_NERRNOS] = {
	"EMFILE",
	"ENFILE",
	"ENOBUFS",
	"ENOMEM",
	"other",
};
static const int guard_errnos[LISTENER_NERRNOS - 1] = {
	EMFILE,
	ENFILE,
	ENOBUFS,
	ENOMEM,
};

struct listener_guard {
	const char *name;
	struct evconnlistener *lev; /* NULL when detached */
	struct event *resume_ev;    /* the backoff is over */
	/* Written by the listener's loop, read by /metrics (COUNTER_*). */
	uint64_t errors[LISTENER_NERRNOS];
	uint64_t logged_ms;  /* last accept_failed line */
	uint64_t suppressed; /* failures not logged since that line */
	struct listener_guard *next;
};

/* libevent calls a listener's error callback with the listener's user data,
 * and evhttp_bind_listener made that its struct evhttp: the guard is found
 * by the listener instead. A process has a few listeners and this list is
 * read only when accept() fails. */
static pthread_mutex_t guards_lock = PTHREAD_MUTEX_INITIALIZER;
static struct listener_guard *guards;

static struct listener_guard *
guard_find(struct evconnlistener *lev)
{
	struct listener_guard *g;

	pthread_mutex_lock(&guards_lock);
	for (g = guards; g != NULL && g->lev != lev; g = g->next)
		;
	pthread_mutex_unlock(&guards_lock);
	return g;
}

static void
guard_resume_cb(evutil_socket_t fd, short what, void *arg)
{
	struct listener_guard *g = arg;

	(void)fd;
	(void)what;
	if (g->lev != NULL)
		evconnlistener_enable(g->lev);
}

static void
guard_log(struct listener_guard *g, int err, size_t i)
{
	uint64_t now = now_ms();

	if (g->logged_ms != 0 && now - g->logged_ms < 1000) {
		g->suppressed++;
		return;
	}
	log_event("accept_failed",
	    json_pack("{s:s,s:s,s:s,s:I}", "listener", g->name, "errno",
	        listener_errno_names[i], "error", strerror(err), "suppressed",
	        (json_int_t)g->suppressed));
	g->logged_ms = now;
	g->suppressed = 0;
}

/* Out of descriptors or memory, the listening socket stays readable: without
 * a pause the loop would spin on accept() (libevent only retries at once). */
static void
guard_error_cb(struct evconnlistener *lev, void *arg)
{
	int err = EVUTIL_SOCKET_ERROR();
	struct listener_guard *g = guard_find(lev);
	struct timeval pause = { 0, LISTENER_BACKOFF_MS * 1000 };
	size_t i = 0;

	(void)arg;
	evconnlistener_disable(lev);
	if (g == NULL)
		return;
	while (i < LISTENER_NERRNOS - 1 && guard_errnos[i] != err)
		i++;
	COUNTER_ADD(&g->errors[i], 1);
	guard_log(g, err, i);
	event_add(g->resume_ev, &pause);
}

struct listener_guard *
listener_guard_new(struct event_base *base, const char *name)
{
	struct listener_guard *g = calloc(1, sizeof(*g));

	if (g == NULL)
		return NULL;
	g->name = name;
	g->resume_ev = evtimer_new(base, guard_resume_cb, g);
	if (g->resume_ev == NULL) {
		free(g);
		return NULL;
	}
	pthread_mutex_lock(&guards_lock);
	g->next = guards;
	guards = g;
	pthread_mutex_unlock(&guards_lock);
	return g;
}

void
listener_guard_attach(struct listener_guard *g, struct evconnlistener *lev)
{
	pthread_mutex_lock(&guards_lock);
	g->lev = lev;
	pthread_mutex_unlock(&guards_lock);
	evconnlistener_set_error_cb(lev, guard_error_cb);
}

void
listener_guard_detach(struct listener_guard *g)
{
	if (g == NULL)
		return;
	event_del(g->resume_ev);
	pthread_mutex_lock(&guards_lock);
	g->lev = NULL;
	pthread_mutex_unlock(&guards_lock);
}

void
listener_guard_free(struct listener_guard *g)
{
	struct listener_guard **p;

	if (g == NULL)
		return;
	pthread_mutex_lock(&guards_lock);
	for (p = &guards; *p != g; p = &(*p)->next)
		;
	*p = g->next;
	pthread_mutex_unlock(&guards_lock);
	event_free(g->resume_ev);
	free(g);
}

uint64_t
listener_guard_errors(const struct listener_guard *g, size_t i)
{
	return g == NULL ? 0 : COUNTER_GET(&g->errors[i]);
}
