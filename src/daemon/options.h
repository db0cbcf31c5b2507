/* Flags and GRACED_* environment variables for `graced serve`. */
#ifndef GRACED_OPTIONS_H
#define GRACED_OPTIONS_H

#include <limits.h>
#include <stddef.h>
#include <stdio.h>

#include "events.h"

struct graced_config;

struct options {
	struct graced_config *cfg;   /* the library's options */
	char spool[PATH_MAX];        /* events spool file */
	enum events_sync spool_sync; /* when a 202 is sent */
	double upgrade_timeout;      /* seconds a new generation may take */
	int supervisor;              /* 1: run the service under one */
	int help;                    /* --help was given */
};

/* Fills o from the environment, then from argv (flags win). Returns 0, or
 * -EINVAL with a one-line reason naming the flag in err. */
int options_parse(
    struct options *o, int argc, char **argv, char *err, size_t errlen);
void options_free(struct options *o);
/* The GRACED_* variable for an option name ("drain-delay" ->
 * "GRACED_DRAIN_DELAY"). */
void options_env_name(const char *name, char *buf, size_t len);
void options_usage(FILE *f);

#endif
