/* Tells the service manager how the process is doing, as sd_notify(3)
 * does: a datagram on the AF_UNIX socket named by $NOTIFY_SOCKET (a path,
 * or an abstract name when it starts with '@'). A process without a
 * manager (no variable) sends nothing, and a manager that does not answer
 * never holds up the drain: the send does not block and its errors are
 * only logged. NOTIFY_SOCKET is left set, as sd_notify leaves it by
 * default, for a later generation of this service. */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "graced.h"
#include "log.h"
#include "notify.h"

static int notify_logged; /* notify_failed was logged (main loop only) */

static void
notify_failed(const char *path, int err)
{
	if (notify_logged)
		return;
	notify_logged = 1;
	log_event("notify_failed",
	    json_pack("{s:s,s:s}", "socket", path, "error", strerror(err)));
}

void
notify_send(const char *fmt, ...)
{
	const char *path = getenv("NOTIFY_SOCKET");
	struct sockaddr_un sun;
	socklen_t len;
	char msg[1024];
	va_list ap;
	int fd, err = 0;

	if (path == NULL || path[0] == '\0')
		return;
	if (strlen(path) >= sizeof(sun.sun_path) ||
	    (path[0] != '/' && path[0] != '@')) {
		notify_failed(path, EINVAL);
		return;
	}
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	memcpy(sun.sun_path, path, strlen(path));
	/* An abstract name has no terminating NUL: its length is exact. */
	if (path[0] == '@')
		sun.sun_path[0] = '\0';
	len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) +
	    strlen(path) + (path[0] == '@' ? 0 : 1));
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0 ||
	    sendto(fd, msg, strlen(msg), MSG_NOSIGNAL, (struct sockaddr *)&sun,
	        len) < 0)
		err = errno;
	if (fd >= 0)
		close(fd);
	if (err != 0)
		notify_failed(path, err);
}
