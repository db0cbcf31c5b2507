/* The service manager's notify protocol (sd_notify(3)), without libsystemd:
 * one datagram per message to $NOTIFY_SOCKET. */
#ifndef GRACED_NOTIFY_H
#define GRACED_NOTIFY_H

/* Formats one message (newline-separated VAR=value lines: READY=1,
 * STOPPING=1, STATUS=...) and sends it, never blocking. Without
 * NOTIFY_SOCKET it does nothing; a failure is logged once
 * ("notify_failed") and otherwise ignored. Main loop only. */
void notify_send(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
