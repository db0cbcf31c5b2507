/* The log stream: one line per event, written with a single write(2) so that
 * lines from several threads never interleave. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "graced.h"
#include "log.h"

static int log_fd = 2;
static enum config_log_format log_format = CONFIG_LOG_JSON;
static char log_path[PATH_MAX];

static int
open_path(void)
{
	int fd =
	    open(log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);

	if (fd < 0)
		return -errno;
	if (log_fd > 2)
		close(log_fd);
	log_fd = fd;
	return 0;
}

int
log_setup(const struct graced_config *cfg)
{
	log_format = cfg->log_format;
	snprintf(log_path, sizeof(log_path), "%s", cfg->log_file);
	if (log_path[0] == '\0')
		return 0;
	return open_path();
}

int
log_reopen(void)
{
	return log_path[0] == '\0' ? 0 : open_path();
}

void
log_close(void)
{
	if (log_fd > 2)
		close(log_fd);
	log_fd = 2;
	log_path[0] = '\0';
}

static void
write_all(const char *s, size_t len)
{
	while (len > 0) {
		ssize_t n = write(log_fd, s, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return;
		s += n;
		len -= (size_t)n;
	}
}

static void
timestamp(char *buf, size_t len)
{
	struct timespec ts;
	struct tm tm;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ",
	    tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
	    tm.tm_sec, ts.tv_nsec / 1000000);
}

static char *
text_line(const char *ts, const char *event, json_t *fields)
{
	char *line = NULL;
	size_t size = 0;
	FILE *f = open_memstream(&line, &size);
	const char *key;
	json_t *value;

	if (f == NULL)
		return NULL;
	fprintf(f, "%s %s", ts, event);
	json_object_foreach(fields, key, value)
	{
		char *v = json_dumps(value,
		    JSON_ENCODE_ANY | JSON_COMPACT | JSON_REAL_PRECISION(6));
		if (json_is_string(value))
			fprintf(f, " %s=%s", key, json_string_value(value));
		else
			fprintf(f, " %s=%s", key, v ? v : "?");
		free(v);
	}
	fputc('\n', f);
	fclose(f);
	return line;
}

void
graced_log(const char *event, json_t *fields)
{
	char ts[64], *line, *bigger;
	json_t *obj;
	size_t len;

	timestamp(ts, sizeof(ts));
	if (fields == NULL)
		fields = json_object();
	if (log_format == CONFIG_LOG_TEXT) {
		line = text_line(ts, event, fields);
		if (line != NULL)
			write_all(line, strlen(line));
		free(line);
		json_decref(fields);
		return;
	}
	obj = json_pack("{s:s,s:s}", "ts", ts, "event", event);
	if (obj == NULL) {
		json_decref(fields);
		return;
	}
	json_object_update(obj, fields);
	json_decref(fields);
	line = json_dumps(
	    obj, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6));
	json_decref(obj);
	if (line == NULL)
		return;
	len = strlen(line);
	/* One write per line, newline included, so lines from several
	 * threads never interleave. */
	bigger = realloc(line, len + 1);
	if (bigger != NULL) {
		line = bigger;
		line[len++] = '\n';
	}
	write_all(line, len);
	free(line);
}
