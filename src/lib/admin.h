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

/* The longest bearer token --admin-token-file may hold. */
#define ADMIN_TOKEN_MAX 1024
/* Reads a bearer token from the file at path: its whole content but a
 * trailing newline; visible ASCII only, 1 to ADMIN_TOKEN_MAX bytes. 0 with
 * *token malloc'd (the caller frees it), or a negative errno with err set
 * to one line naming the file. */
int admin_token_read(const char *path, char **token, char *err, size_t errlen);
/* Logs admin_unprotected when the admin listener fd is not on loopback and
 * no token guards it. */
void admin_check_exposed(const struct graced_server *srv, int fd);

#endif
