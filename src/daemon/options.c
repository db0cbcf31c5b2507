/* Command-line and environment parsing for `graced serve`: library options
 * go through graced_config_set(), the daemon's own (--spool, --spool-sync)
 * are here. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "graced.h"
#include "options.h"

/* The daemon's own options, beside the library's table: defaults,
 * GRACED_* variables and --help come from here. */
static const struct {
	const char *name, *def, *help;
} daemon_options[] = {
	{ "spool", "events.jsonl",
	    "file the events of POST /v1/events are appended to" },
	{ "spool-sync", "batch",
	    "202 once written (none) or once on stable storage (batch)" },
	{ "upgrade-timeout", "30",
	    "seconds a new generation may take to be ready before an upgrade "
	    "is rolled back (0.1 to 3600)" },
	{ "supervisor", "on",
	    "on: a supervisor keeps the PID and the listeners across "
	    "upgrades; off: one process, no upgrades" },
};
#define NDAEMON_OPTIONS (sizeof(daemon_options) / sizeof(daemon_options[0]))

void
options_env_name(const char *name, char *buf, size_t len)
{
	size_t i = 0;

	snprintf(buf, len, "GRACED_");
	for (i = 7; *name != '\0' && i + 1 < len; name++, i++)
		buf[i] = *name == '-' ? '_' :
		                        (char)toupper((unsigned char)*name);
	buf[i] = '\0';
}

static int
set(struct options *o, const char *name, const char *value, char *err,
    size_t errlen)
{
	if (strcmp(name, "spool") == 0) {
		if (value[0] == '\0' || strlen(value) >= sizeof(o->spool)) {
			snprintf(err, errlen, "--spool: needs a file path");
			return -EINVAL;
		}
		strcpy(o->spool, value);
		return 0;
	}
	if (strcmp(name, "spool-sync") == 0) {
		if (strcmp(value, "none") == 0) {
			o->spool_sync = EVENTS_SYNC_NONE;
		} else if (strcmp(value, "batch") == 0) {
			o->spool_sync = EVENTS_SYNC_BATCH;
		} else {
			snprintf(err, errlen,
			    "--spool-sync: expected none or batch, got '%.40s'",
			    value);
			return -EINVAL;
		}
		return 0;
	}
	if (strcmp(name, "upgrade-timeout") == 0) {
		if (config_parse_seconds(value, &o->upgrade_timeout) < 0 ||
		    o->upgrade_timeout < 0.1 || o->upgrade_timeout > 3600) {
			snprintf(err, errlen,
			    "--upgrade-timeout: expected seconds from 0.1 to "
			    "3600, got '%.40s'",
			    value);
			return -EINVAL;
		}
		return 0;
	}
	if (strcmp(name, "supervisor") == 0) {
		if (strcmp(value, "on") != 0 && strcmp(value, "off") != 0) {
			snprintf(err, errlen,
			    "--supervisor: expected on or off, got '%.40s'",
			    value);
			return -EINVAL;
		}
		o->supervisor = strcmp(value, "on") == 0;
		return 0;
	}
	int rc = graced_config_set(o->cfg, name, value, err, errlen);

	if (rc == -ENOENT) {
		snprintf(
		    err, errlen, "unknown flag --%s (see graced --help)", name);
		return -EINVAL;
	}
	return rc;
}

struct env_walk {
	struct options *o;
	char *err;
	size_t errlen;
	int rc;
};

static void
env_one(const char *name, const char *def, const char *help, void *arg)
{
	struct env_walk *ew = arg;
	char var[64];
	const char *value;

	(void)def;
	(void)help;
	options_env_name(name, var, sizeof(var));
	value = getenv(var);
	if (ew->rc < 0 || value == NULL)
		return;
	ew->rc = set(ew->o, name, value, ew->err, ew->errlen);
	if (ew->rc < 0) {
		/* Say which variable it came from. */
		char why[256];
		snprintf(why, sizeof(why), "%s", ew->err);
		snprintf(ew->err, ew->errlen, "%s: %s", var, why);
	}
}

int
options_parse(
    struct options *o, int argc, char **argv, char *err, size_t errlen)
{
	struct env_walk ew = { o, err, errlen, 0 };

	memset(o, 0, sizeof(*o));
	err[0] = '\0';
	o->cfg = graced_config_new();
	if (o->cfg == NULL) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	for (size_t i = 0; i < NDAEMON_OPTIONS; i++) {
		set(o, daemon_options[i].name, daemon_options[i].def, err,
		    errlen);
		env_one(daemon_options[i].name, "", "", &ew);
	}
	graced_config_each(env_one, &ew);
	if (ew.rc < 0)
		return ew.rc;
	for (int i = 0; i < argc; i++) {
		const char *arg = argv[i], *value;
		char name[64];
		size_t len;

		if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0) {
			o->help = 1;
			return 0;
		}
		if (strncmp(arg, "--", 2) != 0) {
			snprintf(err, errlen,
			    "unexpected argument '%s' (see "
			    "graced --help)",
			    arg);
			return -EINVAL;
		}
		arg += 2;
		value = strchr(arg, '=');
		len = value ? (size_t)(value - arg) : strlen(arg);
		if (len >= sizeof(name)) {
			snprintf(err, errlen, "unknown flag --%.40s", arg);
			return -EINVAL;
		}
		memcpy(name, arg, len);
		name[len] = '\0';
		if (value != NULL) {
			value++;
		} else if (i + 1 < argc) {
			value = argv[++i];
		} else {
			snprintf(err, errlen, "--%s: needs a value", name);
			return -EINVAL;
		}
		if (set(o, name, value, err, errlen) < 0)
			return -EINVAL;
	}
	return graced_config_check(o->cfg, err, errlen);
}

void
options_free(struct options *o)
{
	graced_config_free(o->cfg);
	o->cfg = NULL;
}

static void
usage_one(const char *name, const char *def, const char *help, void *arg)
{
	FILE *f = arg;
	char var[64], flag[48];

	options_env_name(name, var, sizeof(var));
	snprintf(flag, sizeof(flag), "--%s", name);
	fprintf(f, "  %-20s %s\n  %-20s default %s, env %s\n", flag, help, "",
	    def[0] ? def : "(none)", var);
}

void
options_usage(FILE *f)
{
	fprintf(f,
	    "usage: graced [serve] [--flag VALUE ...]\n"
	    "       graced drain [--admin HOST:PORT] [--wait] [--timeout S]\n"
	    "                    [--token-file PATH]\n"
	    "       graced upgrade [--admin HOST:PORT] [--timeout S] "
	    "[--token-file PATH]\n"
	    "       graced probe [URL] [--timeout S]\n"
	    "       graced --version\n"
	    "\n"
	    "serve (the default) runs the HTTP service until a drain ends.\n"
	    "Flags (--flag VALUE or --flag=VALUE; times in seconds, "
	    "fractions allowed):\n");
	graced_config_each(usage_one, f);
	for (size_t i = 0; i < NDAEMON_OPTIONS; i++)
		usage_one(daemon_options[i].name, daemon_options[i].def,
		    daemon_options[i].help, f);
	fprintf(f,
	    "\n"
	    "Signals: TERM or INT drain (a second one skips the drain delay),\n"
	    "QUIT stops at once, HUP reopens the log and spool files, USR2\n"
	    "upgrades; all go to the supervisor, the process you started.\n"
	    "Exit status: 0 clean drain, 1 requests cut off or start-up "
	    "failed, 2 bad usage,\n128+N the serving generation was killed "
	    "by signal N.\n"
	    "\n"
	    "drain asks a running instance to drain through its admin "
	    "listener\n(default $GRACED_ADMIN_LISTEN or 127.0.0.1:8081); "
	    "--wait returns once its\nlisteners have closed, or after "
	    "--timeout seconds (default 60).\n"
	    "--token-file PATH (default $GRACED_ADMIN_TOKEN_FILE) sends the "
	    "bearer token\nthat file holds, for --admin-token-file.\n"
	    "upgrade starts the next generation through the admin listener "
	    "and waits\nuntil it serves (exit 0) or is rolled back (exit 1), "
	    "at most --timeout (60).\n"
	    "probe exits 0 if URL (default http://127.0.0.1:8080/healthz) "
	    "answers 2xx.\n");
}
