/* The admin listener: POST /admin/drain and the health endpoints, on the
 * main loop, apart from the public connections so it never holds up a
 * drain. */
#ifndef GRACED_ADMIN_H
#define GRACED_ADMIN_H

struct graced_server;
struct admin;
struct listener_guard;

/* Serves on the listening socket fd (taken over); NULL on failure. */
struct admin *admin_new(struct graced_server *srv, int fd);
/* Answers the "drain --wait" requests once the listeners are closed. */
void admin_release(struct admin *a);
/* Released replies still being written; the loop exits when it is 0. */
unsigned admin_sending(const struct admin *a);
void admin_free(struct admin *a);
/* The admin listener's accept failures, for /metrics. */
const struct listener_guard *admin_guard(const struct admin *a);

#endif
