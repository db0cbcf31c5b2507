/* The library's options, parsed and bounded; see config.c. */
#ifndef GRACED_CONFIG_H
#define GRACED_CONFIG_H

#include <stddef.h>
#include <limits.h>

enum config_log_format {
	CONFIG_LOG_JSON, /* one JSON object per line */
	CONFIG_LOG_TEXT, /* "ts event key=value ..." for people */
};

struct config_addr {
	char host[256]; /* without brackets for IPv6 */
	char port[6];
};

struct graced_config {
	struct config_addr listen; /* public listener */
	struct config_addr
	    admin_listen;         /* admin listener, loopback by default */
	unsigned workers;         /* event loops; 0: one per online CPU */
	double drain_delay;       /* seconds still serving after drain */
	double shutdown_timeout;  /* seconds from drain begin to cut-off */
	double first_byte_grace;  /* seconds a silent new conn gets */
	double idle_timeout;      /* keep-alive idle seconds */
	double request_timeout;   /* seconds to receive a whole request */
	size_t max_body;          /* bytes of request body */
	size_t max_header_size;   /* bytes of request line and fields */
	unsigned max_connections; /* per server; over it: 503 */
	enum config_log_format log_format;
	char log_file[PATH_MAX]; /* empty: stderr */
	int access_log;          /* one log line per request */
	int access_log_probes;   /* ... also for /healthz and /livez */

	/* The bearer token's file; empty: admin requests take no token. */
	char admin_token_file[PATH_MAX];
};

int config_parse_addr(const char *s, struct config_addr *out);
int config_parse_seconds(const char *s, double *out);
int config_parse_bytes(const char *s, size_t *out);

#endif
