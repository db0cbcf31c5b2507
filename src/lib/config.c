/* The options table: names, defaults, bounds and parsers for every library
 * option, so flags, environment variables and errors all come from one
 * place. */
#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "graced.h"
#include "config.h"

enum opt_type {
	OPT_ADDR,
	OPT_UINT,
	OPT_SECONDS,
	OPT_BYTES,
	OPT_LOGFMT,
	OPT_PATH,
	OPT_BOOL
};

struct opt {
	const char *name;
	enum opt_type type;
	size_t off;
	const char *def;
	double min, max; /* bounds for numbers */
	const char *help;
};

#define OFF(f) offsetof(struct graced_config, f)

static const struct opt opts[] = {
	{ "listen", OPT_ADDR, OFF(listen), "0.0.0.0:8080", 0, 0,
	    "public listener HOST:PORT" },
	{ "admin-listen", OPT_ADDR, OFF(admin_listen), "127.0.0.1:8081", 0, 0,
	    "admin listener HOST:PORT (POST /admin/drain)" },
	{ "workers", OPT_UINT, OFF(workers), "0", 0, 256,
	    "event loops (threads); 0: one per online CPU" },
	{ "drain-delay", OPT_SECONDS, OFF(drain_delay), "5", 0, 3600,
	    "seconds still serving after the drain begins" },
	{ "shutdown-timeout", OPT_SECONDS, OFF(shutdown_timeout), "25", 0.001,
	    86400, "seconds from the drain's start to cutting requests off" },
	{ "first-byte-grace", OPT_SECONDS, OFF(first_byte_grace), "2", 0, 60,
	    "seconds a connection that sent nothing gets once listeners "
	    "close" },
	{ "idle-timeout", OPT_SECONDS, OFF(idle_timeout), "60", 0.001, 86400,
	    "seconds an idle keep-alive connection is kept" },
	{ "request-timeout", OPT_SECONDS, OFF(request_timeout), "30", 0.001,
	    86400, "seconds to receive a whole request once it has begun" },
	{ "max-body", OPT_BYTES, OFF(max_body), "1048576", 1, 1073741824.0,
	    "largest request body in bytes (K, M, G suffixes)" },
	{ "max-header-size", OPT_BYTES, OFF(max_header_size), "16384", 1024,
	    16777216.0,
	    "largest request line and headers in bytes; unread input per "
	    "connection is capped at this plus --max-body" },
	{ "max-connections", OPT_UINT, OFF(max_connections), "10000", 1,
	    1000000, "open connections; past it requests get 503" },
	{ "log-format", OPT_LOGFMT, OFF(log_format), "json", 0, 0,
	    "json or text" },
	{ "log-file", OPT_PATH, OFF(log_file), "", 0, 0,
	    "log file, reopened on SIGHUP (default: stderr)" },
	{ "access-log", OPT_BOOL, OFF(access_log), "on", 0, 0,
	    "one log line per request: on or off" },
	{ "admin-token-file", OPT_PATH, OFF(admin_token_file), "", 0, 0,
	    "file with the bearer token every admin request must carry "
	    "(read at start)" },
	{ "access-log-probes", OPT_BOOL, OFF(access_log_probes), "on", 0, 0,
	    "access log lines for /healthz and /livez too: on or off" },
};

#define NOPTS (sizeof(opts) / sizeof(opts[0]))

int
config_parse_addr(const char *s, struct config_addr *out)
{
	const char *colon, *host = s;
	size_t hostlen;
	char *end;
	unsigned long port;

	if (s[0] == '[') {
		const char *close = strchr(s, ']');
		if (close == NULL || close[1] != ':')
			return -EINVAL;
		host = s + 1;
		hostlen = (size_t)(close - host);
		colon = close + 1;
	} else {
		colon = strrchr(s, ':');
		if (colon == NULL ||
		    memchr(s, ':', (size_t)(colon - s)) != NULL)
			return -EINVAL;
		hostlen = (size_t)(colon - s);
	}
	if (hostlen == 0 || hostlen >= sizeof(out->host) || colon[1] == '\0' ||
	    strlen(colon + 1) >= sizeof(out->port))
		return -EINVAL;
	/* Brackets only ever enclose an IPv6 host: one inside a host would
	 * make an address that graced_config_get() cannot print back. */
	if (memchr(host, '[', hostlen) != NULL ||
	    memchr(host, ']', hostlen) != NULL)
		return -EINVAL;
	errno = 0;
	port = strtoul(colon + 1, &end, 10);
	if (*end != '\0' || errno != 0 || port > 65535 || colon[1] == '-' ||
	    colon[1] == '+')
		return -EINVAL;
	memcpy(out->host, host, hostlen);
	out->host[hostlen] = '\0';
	snprintf(out->port, sizeof(out->port), "%lu", port);
	return 0;
}

int
config_parse_seconds(const char *s, double *out)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (end == s || *end != '\0' || errno != 0 || !isfinite(v) ||
	    s[0] == ' ')
		return -EINVAL;
	*out = v;
	return 0;
}

int
config_parse_bytes(const char *s, size_t *out)
{
	char *end;
	unsigned long long v, mult = 1;

	if (s[0] < '0' || s[0] > '9')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno != 0)
		return -EINVAL;
	if (*end != '\0') {
		const char *units = "KMG";
		const char *u = strchr(units, end[0] & ~0x20);
		if (u == NULL || end[1] != '\0')
			return -EINVAL;
		for (int i = 0; i <= u - units; i++)
			mult *= 1024;
	}
	if (v > SIZE_MAX / mult)
		return -EINVAL;
	*out = (size_t)(v * mult);
	return 0;
}

static const struct opt *
opt_find(const char *name)
{
	for (size_t i = 0; i < NOPTS; i++)
		if (strcmp(opts[i].name, name) == 0)
			return &opts[i];
	return NULL;
}

/* A bound as a user would write it: sizes with the largest K, M or G
 * suffix that divides them, other numbers in full. */
static void
bound_text(const struct opt *o, double v, char *buf, size_t len)
{
	static const char units[] = "GMK";
	unsigned long long n = (unsigned long long)v;

	for (int i = 0; o->type == OPT_BYTES && i < 3 && n > 0; i++) {
		unsigned long long unit = 1ULL << (10 * (3 - i));
		if (n % unit == 0) {
			snprintf(buf, len, "%llu%c", n / unit, units[i]);
			return;
		}
	}
	snprintf(buf, len, "%.15g", v);
}

static int
opt_parse(const struct opt *o, struct graced_config *cfg, const char *value,
    char *err, size_t errlen)
{
	char *field = (char *)cfg + o->off;
	double d;
	size_t z;

	switch (o->type) {
	case OPT_ADDR:
		if (config_parse_addr(value, (struct config_addr *)field) < 0)
			goto bad_addr;
		return 0;
	case OPT_UINT:
	case OPT_BYTES:
		if (config_parse_bytes(value, &z) < 0 ||
		    (o->type == OPT_UINT &&
		        strchr("kKmMgG", value[strlen(value) - 1]) != NULL))
			goto bad_number;
		if ((double)z < o->min || (double)z > o->max)
			goto out_of_range;
		if (o->type == OPT_UINT)
			*(unsigned *)field = (unsigned)z;
		else
			*(size_t *)field = z;
		return 0;
	case OPT_SECONDS:
		if (config_parse_seconds(value, &d) < 0)
			goto bad_number;
		if (d < o->min || d > o->max)
			goto out_of_range;
		*(double *)field = d;
		return 0;
	case OPT_LOGFMT:
		if (strcmp(value, "json") == 0)
			*(enum config_log_format *)field = CONFIG_LOG_JSON;
		else if (strcmp(value, "text") == 0)
			*(enum config_log_format *)field = CONFIG_LOG_TEXT;
		else {
			snprintf(err, errlen, "--%s: '%s' is not json or text",
			    o->name, value);
			return -EINVAL;
		}
		return 0;
	case OPT_PATH:
		if (strlen(value) >= PATH_MAX) {
			snprintf(err, errlen, "--%s: path too long", o->name);
			return -EINVAL;
		}
		strcpy(field, value);
		return 0;
	case OPT_BOOL:
		if (strcmp(value, "on") == 0 || strcmp(value, "true") == 0 ||
		    strcmp(value, "1") == 0)
			*(int *)field = 1;
		else if (strcmp(value, "off") == 0 ||
		    strcmp(value, "false") == 0 || strcmp(value, "0") == 0)
			*(int *)field = 0;
		else {
			snprintf(err, errlen, "--%s: '%s' is not on or off",
			    o->name, value);
			return -EINVAL;
		}
		return 0;
	}
	return -EINVAL;
bad_addr:
	snprintf(err, errlen, "--%s: '%s' is not HOST:PORT", o->name, value);
	return -EINVAL;
bad_number:
	snprintf(err, errlen, "--%s: '%s' is not a number", o->name, value);
	return -EINVAL;
out_of_range : {
	char lo[32], hi[32];
	bound_text(o, o->min, lo, sizeof(lo));
	bound_text(o, o->max, hi, sizeof(hi));
	snprintf(err, errlen, "--%s: '%s' is out of range (%s to %s)", o->name,
	    value, lo, hi);
	return -EINVAL;
}
}

struct graced_config *
graced_config_new(void)
{
	struct graced_config *cfg = calloc(1, sizeof(*cfg));
	char err[256];

	if (cfg == NULL)
		return NULL;
	for (size_t i = 0; i < NOPTS; i++) {
		int rc =
		    opt_parse(&opts[i], cfg, opts[i].def, err, sizeof(err));
		(void)rc;
		/* Defaults are constants: a failure is a bug in the table. */
		if (rc < 0)
			abort();
	}
	return cfg;
}

int
graced_config_set(struct graced_config *cfg, const char *name,
    const char *value, char *err, size_t errlen)
{
	const struct opt *o = opt_find(name);

	if (o == NULL) {
		snprintf(err, errlen, "unknown option '%s'", name);
		return -ENOENT;
	}
	return opt_parse(o, cfg, value, err, errlen);
}

int
graced_config_check(const struct graced_config *cfg, char *err, size_t errlen)
{
	if (cfg->shutdown_timeout <= cfg->drain_delay) {
		snprintf(err, errlen,
		    "--shutdown-timeout (%.15g) must be longer "
		    "than --drain-delay (%.15g)",
		    cfg->shutdown_timeout, cfg->drain_delay);
		return -EINVAL;
	}
	if (strcmp(cfg->listen.host, cfg->admin_listen.host) == 0 &&
	    strcmp(cfg->listen.port, cfg->admin_listen.port) == 0 &&
	    strcmp(cfg->listen.port, "0") != 0) {
		snprintf(err, errlen,
		    "--listen and --admin-listen are both "
		    "%s:%s",
		    cfg->listen.host, cfg->listen.port);
		return -EINVAL;
	}
	return 0;
}

const char *
graced_config_get(const struct graced_config *cfg, const char *name)
{
	static char buf[PATH_MAX + 16];
	const struct opt *o = opt_find(name);
	const char *field;

	if (o == NULL)
		return NULL;
	field = (const char *)cfg + o->off;
	switch (o->type) {
	case OPT_ADDR: {
		const struct config_addr *a = (const void *)field;
		const char *fmt = strchr(a->host, ':') ? "[%s]:%s" : "%s:%s";
		snprintf(buf, sizeof(buf), fmt, a->host, a->port);
		break;
	}
	case OPT_UINT:
		snprintf(buf, sizeof(buf), "%u", *(const unsigned *)field);
		break;
	case OPT_BYTES:
		snprintf(buf, sizeof(buf), "%zu", *(const size_t *)field);
		break;
	case OPT_SECONDS:
		snprintf(buf, sizeof(buf), "%.15g", *(const double *)field);
		break;
	case OPT_LOGFMT:
		snprintf(buf, sizeof(buf), "%s",
		    *(const enum config_log_format *)field == CONFIG_LOG_TEXT ?
		        "text" :
		        "json");
		break;
	case OPT_PATH: snprintf(buf, sizeof(buf), "%s", field); break;
	case OPT_BOOL:
		snprintf(
		    buf, sizeof(buf), "%s", *(const int *)field ? "on" : "off");
		break;
	}
	return buf;
}

void
graced_config_each(
    void (*fn)(const char *name, const char *def, const char *help, void *arg),
    void *arg)
{
	for (size_t i = 0; i < NOPTS; i++)
		fn(opts[i].name, opts[i].def, opts[i].help, arg);
}

void
graced_config_free(struct graced_config *cfg)
{
	free(cfg);
}
