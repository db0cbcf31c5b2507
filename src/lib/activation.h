/* Listeners handed over by socket activation (LISTEN_FDS, LISTEN_PID,
 * LISTEN_FDNAMES): systemd's .socket units, and the same variables for any
 * other process that passes graced its listening sockets. */
#ifndef GRACED_ACTIVATION_H
#define GRACED_ACTIVATION_H

#include <stddef.h>

/* Sockets beyond this many are refused (the start fails). */
#define ACTIVATION_MAX 64

/* The adopted listeners. They are shared with the process that passed them
 * (it may hold a copy and a queue), so their owner closes them only at the
 * end and never filters, shrinks or shuts them down. */
struct activation {
	int http[ACTIVATION_MAX]; /* fds named "http", or unnamed */
	unsigned nhttp;
	int admin; /* the fd named "admin", -1: none */
	/* GRACED_LISTENERS_OWNED=1 came with them: the process that bound
	 * them (graced's supervisor) holds them but never accepts, so this
	 * process drains them as its own when it stops for good (the SYN
	 * filter and the queue wait), though not in a handover. */
	int owned;
};

/* Reads the three variables (and GRACED_LISTENERS_OWNED), if LISTEN_PID is
 * this process, and unsets them so that children do not inherit them (sd_listen_fds with
 * unset_environment). Every fd is checked and healed (listener_adopt) and
 * logged ("listeners_adopted"). a is emptied first; with nothing passed it
 * stays empty. Returns 0, or a negative errno with err set: a socket that is
 * not listening, a name other than "http" or "admin", "admin" twice. */
int activation_take(struct activation *a, char *err, size_t errlen);
/* Closes what a holds and empties it. */
void activation_close(struct activation *a);

#endif
