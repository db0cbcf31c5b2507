/* A small blocking HTTP/1.1 client for `graced drain`, `graced upgrade`
 * and `graced probe`. */
#ifndef GRACED_CLIENT_H
#define GRACED_CLIENT_H

#include <stddef.h>

struct client_url {
	char host[256];
	char port[6];
	char path[1024];
};

/* Parses "http://HOST[:PORT][/PATH]". 0 or -EINVAL. */
int client_parse_url(const char *url, struct client_url *out);
/* Sends one request, with "Authorization: Bearer token" unless token is
 * NULL, and reads the status code of the reply into *status, and its body
 * (cut to bodylen - 1 bytes) into body unless body is NULL. Returns 0,
 * -ECONNREFUSED (nobody listens), -ECONNRESET (closed without a reply),
 * -ETIMEDOUT, or another negative errno. */
int client_request(const struct client_url *u, const char *method,
    const char *token, double timeout, int *status, char *body, size_t bodylen);
/* The subcommands: each returns the process exit status. */
int client_drain(int argc, char **argv);
int client_probe(int argc, char **argv);
int client_upgrade(int argc, char **argv);

#endif
