/* Process-wide log stream: JSON lines (or text) on stderr or a file. */
#ifndef GRACED_LOG_H
#define GRACED_LOG_H

#include <jansson.h>
#include "config.h"

/* Sets format and destination; returns 0 or a negative errno. */
int log_setup(const struct graced_config *cfg);
/* Reopens the log file (no-op on stderr); 0 or a negative errno. */
int log_reopen(void);
void log_close(void);
/* Same as graced_log(); a short name for the library's own lines. */
#define log_event graced_log

#endif
