/* Listening sockets. Closing a listener resets whatever waits in its accept
 * queue, so a drain first stops new SYNs (a classic BPF filter; where the
 * kernel refuses one to unprivileged processes, a backlog of 0), accepts
 * until the queue is empty, and only then closes. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "listener.h"

int
listener_open(
    const struct config_addr *addr, int reuseport, char *err, size_t errlen)
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
	if (reuseport &&
	    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0)
		goto fail;
	if (bind(fd, res->ai_addr, res->ai_addrlen) < 0)
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

int
listener_shrink_backlog(int fd)
{
	/* listen() again only sets the backlog. At 0 the queue counts as full
	 * while it holds anything, and the kernel drops new SYNs (clients
	 * retry them later); what is queued stays. */
	return listen(fd, 0) < 0 ? -errno : 0;
}

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
