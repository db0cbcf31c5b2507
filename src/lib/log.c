/* The log stream: one line per event. Lines go into a bounded in-memory
 * queue; a writer thread empties it with one write(2) per batch. When the
 * sink stalls the queue fills and new lines are dropped and counted: a loop
 * never waits for the log. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <poll.h>
#include <sys/stat.h>
#include <sys/uio.h>

#include "graced.h"
#include "log.h"
#include "util.h"

/* Big enough for a few milliseconds of access lines at full speed. */
#define LOG_QUEUE_SIZE (256 * 1024)
/* The writer lets lines gather this long after waking, so a busy server
 * costs a few hundred writes a second, not one per line. */
#define LOG_BATCH_NS 2000000

/* Set by log_setup before the writer starts; read by every thread. */
static enum config_log_format log_format = CONFIG_LOG_JSON;
static char log_path[PATH_MAX];
/* Owned by the writer while it runs, else by the caller of log_*. */
static int log_fd = 2;

/* The queue: a ring of whole lines. Everything below is guarded by
 * log_lock; producers hold it only for a memcpy. */
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t log_wake = PTHREAD_COND_INITIALIZER; /* writer */
static char *log_ring;
static size_t log_head, log_tail; /* bytes queued / taken, ever */
static unsigned log_users;        /* log_setup calls not closed yet */
static int log_running;           /* writer thread started, not joined */
static int log_waiting;           /* writer sleeps on log_wake */
static int log_stopping;          /* writer: flush and exit (atomic) */
static uint64_t log_deadline_ms;  /* ... giving up then (now_ms) */
static int log_next_fd = -1;      /* reopened file for the writer (stores
                                 under log_lock, atomic: the writer peeks) */
static pthread_t log_thread;
/* Relaxed atomic; any thread adds, /metrics reads. */
static uint64_t log_drops;

uint64_t
log_dropped(void)
{
	return __atomic_load_n(&log_drops, __ATOMIC_RELAXED);
}

static void
count_drops(uint64_t n)
{
	__atomic_fetch_add(&log_drops, n, __ATOMIC_RELAXED);
}

static void
write_all(int fd, const char *s, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, s, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return;
		s += n;
		len -= (size_t)n;
	}
}

/* Takes fd as the log file: now if no writer runs, else through the writer
 * at its next batch (it may be inside a write on the old one). */
static void
set_fd(int fd)
{
	int old = -1;

	pthread_mutex_lock(&log_lock);
	if (log_running) {
		old = log_next_fd;
		__atomic_store_n(&log_next_fd, fd, __ATOMIC_RELAXED);
	} else {
		old = log_fd;
		log_fd = fd;
	}
	pthread_mutex_unlock(&log_lock);
	if (old > 2)
		close(old);
}

static int
open_path(void)
{
	int fd =
	    open(log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);

	if (fd < 0)
		return -errno;
	set_fd(fd);
	return 0;
}

/* Whether the writer should leave a stalled sink (writer thread): the
 * final flush is out of time, or a reopened file waits (SIGHUP after the
 * reader of the old one went away). */
static int
give_up(void)
{
	return __atomic_load_n(&log_next_fd, __ATOMIC_RELAXED) >= 0 ||
	    (__atomic_load_n(&log_stopping, __ATOMIC_ACQUIRE) &&
	        now_ms() >=
	            __atomic_load_n(&log_deadline_ms, __ATOMIC_RELAXED));
}

/* Writes [tail, head) of the ring; returns how far it got. A regular file
 * takes the whole batch. A pipe or socket takes whole lines of at most
 * PIPE_BUF bytes once poll(2) says it has room, so the writer never sits in
 * a write(2) on a stalled reader and never stops inside a line: it gives up
 * only between lines (see give_up). */
static size_t
write_batch(int fd, int regular, size_t tail, size_t head)
{
	struct pollfd p = { fd, POLLOUT, 0 };

	while (tail < head) {
		size_t off = tail % LOG_QUEUE_SIZE, len = head - tail, first;
		struct iovec iov[2];
		ssize_t n;
		if (!regular) {
			if (poll(&p, 1, 100) == 0) {
				if (give_up())
					break;
				continue;
			}
			/* Whole lines of at most PIPE_BUF bytes: a pipe
			 * writes those at once, never mixed with another
			 * writer's (another generation's). */
			if (len > PIPE_BUF) {
				size_t end = PIPE_BUF;
				while (end > 0 &&
				    log_ring[(tail + end - 1) %
				        LOG_QUEUE_SIZE] != '\n')
					end--;
				len = end > 0 ? end : PIPE_BUF;
			}
		}
		/* Across the end of the ring, still one call: two writes
		 * could let another process's lines in between. */
		first = len < LOG_QUEUE_SIZE - off ? len : LOG_QUEUE_SIZE - off;
		iov[0] = (struct iovec){ log_ring + off, first };
		iov[1] = (struct iovec){ log_ring, len - first };
		n = writev(fd, iov, len > first ? 2 : 1);
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n <= 0)
			break;
		tail += (size_t)n;
	}
	return tail;
}

static int
is_regular(int fd)
{
	struct stat st;

	return fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
}

static uint64_t
count_lines(size_t tail, size_t head)
{
	uint64_t n = 0;

	for (size_t i = tail; i < head; i++)
		n += log_ring[i % LOG_QUEUE_SIZE] == '\n';
	return n;
}

static void *
writer_main(void *arg)
{
	struct timespec pause = { 0, LOG_BATCH_NS };
	int regular = is_regular(log_fd);

	(void)arg;
	pthread_mutex_lock(&log_lock);
	for (;;) {
		size_t tail = log_tail, head, done;
		int fd;
		while (log_head == log_tail && !log_stopping) {
			log_waiting = 1;
			pthread_cond_wait(&log_wake, &log_lock);
		}
		log_waiting = 0;
		if (log_head == log_tail)
			break;
		if (!log_stopping) {
			pthread_mutex_unlock(&log_lock);
			nanosleep(&pause, NULL);
			pthread_mutex_lock(&log_lock);
		}
		head = log_head;
		if (log_next_fd >= 0) {
			if (log_fd > 2)
				close(log_fd);
			log_fd = log_next_fd;
			__atomic_store_n(&log_next_fd, -1, __ATOMIC_RELAXED);
			regular = is_regular(log_fd);
		}
		fd = log_fd;
		pthread_mutex_unlock(&log_lock);
		done = write_batch(fd, regular, tail, head);
		/* Out of time, or the sink failed: the rest is lost. */
		if (done < head)
			count_drops(count_lines(done, head));
		pthread_mutex_lock(&log_lock);
		log_tail = head;
		if (done < head && log_stopping && log_next_fd < 0)
			break;
	}
	pthread_mutex_unlock(&log_lock);
	return NULL;
}

static void
writer_start(void)
{
	sigset_t all, old;

	if (log_ring == NULL)
		log_ring = malloc(LOG_QUEUE_SIZE);
	if (log_ring == NULL)
		return;
	log_head = log_tail = 0;
	log_stopping = 0;
	/* Signals belong to the main loop. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	if (pthread_create(&log_thread, NULL, writer_main, NULL) == 0)
		log_running = 1;
	pthread_sigmask(SIG_SETMASK, &old, NULL);
}

/* Flushes what is queued; the writer gives up after LOG_FLUSH_MS. */
static void
writer_stop(void)
{
	pthread_mutex_lock(&log_lock);
	__atomic_store_n(
	    &log_deadline_ms, now_ms() + LOG_FLUSH_MS, __ATOMIC_RELAXED);
	__atomic_store_n(&log_stopping, 1, __ATOMIC_RELEASE);
	pthread_cond_signal(&log_wake);
	pthread_mutex_unlock(&log_lock);
	pthread_join(log_thread, NULL);
	pthread_mutex_lock(&log_lock);
	/* Given up on, or queued after the writer's last look. */
	count_drops(count_lines(log_tail, log_head));
	log_running = 0;
	log_head = log_tail = 0;
	if (log_next_fd >= 0) {
		if (log_fd > 2)
			close(log_fd);
		log_fd = log_next_fd;
		__atomic_store_n(&log_next_fd, -1, __ATOMIC_RELAXED);
	}
	pthread_mutex_unlock(&log_lock);
	free(log_ring);
	log_ring = NULL;
}

int
log_setup(const struct graced_config *cfg)
{
	int rc = 0;

	/* The sink is the process's: the first server sets it up, later
	 * ones share it (threads of the first may be logging already). */
	if (log_users++ > 0)
		return 0;
	log_format = cfg->log_format;
	snprintf(log_path, sizeof(log_path), "%s", cfg->log_file);
	if (log_path[0] != '\0')
		rc = open_path();
	writer_start();
	return rc;
}

int
log_reopen(void)
{
	return log_path[0] == '\0' ? 0 : open_path();
}

void
log_close(void)
{
	if (log_users == 0 || --log_users > 0)
		return;
	if (log_running)
		writer_stop();
	if (log_fd > 2)
		close(log_fd);
	log_fd = 2;
	log_path[0] = '\0';
}

/* Queues one whole line (newline included) or drops it; without a writer,
 * writes it at once. */
static void
log_put(const char *line, size_t len)
{
	size_t at, first;

	pthread_mutex_lock(&log_lock);
	if (!log_running) {
		struct pollfd p = { log_fd, POLLOUT, 0 };
		pthread_mutex_unlock(&log_lock);
		/* Without a writer (before the first server, after the last),
		 * a stalled reader must not block us either. */
		if (poll(&p, 1, 0) == 1)
			write_all(p.fd, line, len);
		else
			count_drops(1);
		return;
	}
	if (LOG_QUEUE_SIZE - (log_head - log_tail) < len) {
		pthread_mutex_unlock(&log_lock);
		count_drops(1);
		return;
	}
	at = log_head % LOG_QUEUE_SIZE;
	first = len < LOG_QUEUE_SIZE - at ? len : LOG_QUEUE_SIZE - at;
	memcpy(log_ring + at, line, first);
	memcpy(log_ring, line + first, len - first);
	log_head += len;
	if (log_waiting) {
		log_waiting = 0;
		pthread_cond_signal(&log_wake);
	}
	pthread_mutex_unlock(&log_lock);
}

/* "2026-01-02T03:04:05.678Z" (24 characters) for a monotonic reading: the
 * wall clock is read and the seconds formatted once a second per thread. */
static void
timestamp(char *out, uint64_t mono_us)
{
	static __thread int64_t offset_us; /* wall minus monotonic */
	static __thread uint64_t synced_us;
	static __thread int64_t sec = -1;
	static __thread char text[64];
	int64_t wall;
	int ms;

	if (sec < 0 || mono_us - synced_us >= 1000000) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		offset_us = (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000 -
		    (int64_t)mono_us;
		synced_us = mono_us;
	}
	wall = (int64_t)mono_us + offset_us;
	if (wall / 1000000 != sec) {
		time_t t = (time_t)(wall / 1000000);
		struct tm tm;
		gmtime_r(&t, &tm);
		snprintf(text, sizeof(text), "%04d-%02d-%02dT%02d:%02d:%02d",
		    tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
		    tm.tm_min, tm.tm_sec);
		sec = wall / 1000000;
	}
	ms = (int)(wall % 1000000 / 1000);
	memcpy(out, text, 19);
	out[19] = '.';
	out[20] = (char)('0' + ms / 100);
	out[21] = (char)('0' + ms / 10 % 10);
	out[22] = (char)('0' + ms % 10);
	out[23] = 'Z';
}

/* Length of the valid UTF-8 sequence at s (RFC 3629), or 0. */
static size_t
utf8_len(const unsigned char *s, size_t len)
{
	unsigned char lo = 0x80, hi = 0xbf;
	size_t n;

	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		n = 2;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		n = 3;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		n = 4;
	else
		return 0;
	if (s[0] == 0xe0)
		lo = 0xa0;
	else if (s[0] == 0xed)
		hi = 0x9f;
	else if (s[0] == 0xf0)
		lo = 0x90;
	else if (s[0] == 0xf4)
		hi = 0x8f;
	if (len < n || s[1] < lo || s[1] > hi)
		return 0;
	for (size_t i = 2; i < n; i++)
		if (s[i] < 0x80 || s[i] > 0xbf)
			return 0;
	return n;
}

/* Whether c goes into a JSON string as it is: printable ASCII but the
 * quote and the backslash. A table, as it runs for every byte logged. */
static int
is_plain(unsigned char c)
{
	static const uint32_t bits[8] = { 0, 0xfffffffb, 0xefffffff,
		0x7fffffff };

	return (bits[c >> 5] >> (c & 31)) & 1;
}

size_t
log_escape(char *dst, size_t cap, const char *src, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *s = (const unsigned char *)src;
	size_t o = 0, i = 0;

	while (i < len) {
		unsigned char c = s[i];
		char esc[6] = { '\\', 'u', '0', '0', hex[c >> 4], hex[c & 15] };
		const char *p = esc;
		size_t n = 6, adv;
		/* Most bytes need nothing: a run of them is one copy. */
		for (adv = 0; i + adv < len && is_plain(s[i + adv]); adv++)
			;
		if (adv > 0) {
			p = src + i;
			n = adv < cap - o ? adv : cap - o;
			adv = n;
			if (n == 0)
				break;
		} else if (c == '"' || c == '\\') {
			esc[1] = (char)c;
			n = 2;
			adv = 1;
		} else if (c >= 0x80) {
			adv = utf8_len(s + i, len - i);
			p = adv > 0 ? src + i : "\\ufffd";
			n = adv > 0 ? adv : 6;
			adv = adv > 0 ? adv : 1;
		} else
			adv = 1;
		if (o + n > cap)
			break;
		memcpy(dst + o, p, n);
		o += n;
		i += adv;
	}
	return o;
}

/* Room kept for the line's end ("}\n"). */
#define LINE_END 2

static void
line_add(struct log_line *l, const char *s, size_t n)
{
	if (l->len + n + LINE_END <= sizeof(l->buf)) {
		memcpy(l->buf + l->len, s, n);
		l->len += n;
	}
}

/* ,"key": in JSON, " key=" in text; 0 if the line has no room left for
 * the field (then it is left out whole). */
static int
line_key(struct log_line *l, const char *key)
{
	int json = log_format == CONFIG_LOG_JSON;

	/* Key, punctuation, quotes and a 20-digit number. */
	if (l->len + strlen(key) + 26 + LINE_END > sizeof(l->buf))
		return 0;
	line_add(l, json ? ",\"" : " ", json ? 2 : 1);
	line_add(l, key, strlen(key));
	line_add(l, json ? "\":" : "=", json ? 2 : 1);
	return 1;
}

void
log_line_begin(struct log_line *l, const char *event, uint64_t mono_us)
{
	char ts[24];

	timestamp(ts, mono_us);
	l->len = 0;
	if (log_format == CONFIG_LOG_TEXT) {
		line_add(l, ts, sizeof(ts));
		line_add(l, " ", 1);
		line_add(l, event, strlen(event));
		return;
	}
	line_add(l, "{\"ts\":\"", 7);
	line_add(l, ts, sizeof(ts));
	line_add(l, "\",\"event\":\"", 11);
	line_add(l, event, strlen(event));
	line_add(l, "\"", 1);
}

void
log_line_str(struct log_line *l, const char *key, const char *val, size_t len)
{
	int json = log_format == CONFIG_LOG_JSON;
	size_t room;

	if (val == NULL || !line_key(l, key))
		return;
	if (json)
		line_add(l, "\"", 1);
	/* Keep room for the closing quote. */
	room = sizeof(l->buf) - l->len - LINE_END - (size_t)json;
	l->len += log_escape(l->buf + l->len, room, val, len);
	if (json)
		line_add(l, "\"", 1);
}

void
log_line_uint(struct log_line *l, const char *key, uint64_t v)
{
	char digits[20];
	size_t n = 0;

	if (!line_key(l, key))
		return;
	do {
		digits[sizeof(digits) - 1 - n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v > 0);
	line_add(l, digits + sizeof(digits) - n, n);
}

void
log_line_ms(struct log_line *l, const char *key, uint64_t us)
{
	char frac[4] = { '.', (char)('0' + us / 100 % 10),
		(char)('0' + us / 10 % 10), (char)('0' + us % 10) };

	size_t before = l->len;

	log_line_uint(l, key, us / 1000);
	if (l->len > before)
		line_add(l, frac, sizeof(frac));
}

void
log_line_end(struct log_line *l)
{
	if (log_format == CONFIG_LOG_JSON)
		l->buf[l->len++] = '}';
	l->buf[l->len++] = '\n';
	log_put(l->buf, l->len);
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
		if (json_is_string(value)) {
			/* A value from a client must not start a new line. */
			char esc[LOG_LINE_MAX];
			size_t n = log_escape(esc, sizeof(esc),
			    json_string_value(value),
			    json_string_length(value));
			fprintf(f, " %s=%.*s", key, (int)n, esc);
		} else
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
	char ts[25], *line, *bigger;
	json_t *obj;
	size_t len;

	timestamp(ts, now_us());
	ts[24] = '\0';
	if (fields == NULL)
		fields = json_object();
	if (log_format == CONFIG_LOG_TEXT) {
		line = text_line(ts, event, fields);
		if (line != NULL)
			log_put(line, strlen(line));
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
	/* One piece per line, newline included, so lines from several
	 * threads never interleave. */
	bigger = realloc(line, len + 1);
	if (bigger != NULL) {
		line = bigger;
		line[len++] = '\n';
	}
	log_put(line, len);
	free(line);
}
