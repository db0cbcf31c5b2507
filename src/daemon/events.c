/* The events application. Events of all the requests of one loop iteration
 * are written with one write(2) (group commit) before their 202s are sent,
 * so an accepted event is always in the spool file; with --spool-sync batch
 * one fdatasync of that write also comes before the 202s, else the stop hook
 * fsyncs the file before the process exits. A batch the spool cannot take
 * (full, over the file-size limit, deleted) is taken back whole and its
 * requests get 503; the spool's state is on /healthz and /metrics. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "events.h"
#include "graced.h"

struct waiting {
	struct graced_request *r; /* NULL once aborted */
	size_t accepted;
};

/* The part of the application that belongs to one event loop: requests of
 * a loop are only ever touched from that loop. Other threads read only
 * written (below) and base (fixed once the lane is listed). */
struct lane {
	struct events *ev;
	struct event_base *base;
	struct evbuffer *batch;  /* lines not written yet */
	struct waiting *waiting; /* requests whose lines are in batch */
	size_t nwaiting, cap;
	struct event *flush_ev; /* end of this loop iteration: write */
	/* Written by the lane's loop; read by the stop hook on the main loop
	 * once no request is left, after the workers' last report (libevent's
	 * locks order the two). */
	unsigned long long written;
};

#define EVENTS_MAX_LANES 256

/* The spool's states (SPOOL_OK to SPOOL_GONE) and the causes a batch is
 * refused for (SPOOL_FULL to SPOOL_IO). */
enum spool_state {
	SPOOL_OK,   /* the last write went through */
	SPOOL_FULL, /* ENOSPC, EDQUOT or EFBIG: each batch tries again */
	SPOOL_GONE, /* unlinked and cannot be recreated: nothing is written */
	SPOOL_IO,   /* any other error; not a state of its own */
	SPOOL_NCAUSES
};

static const char *const spool_names[SPOOL_NCAUSES] = { "ok", "full", "gone",
	"io" };
static const char *const spool_replies[SPOOL_NCAUSES] = { "", "spool full",
	"spool gone", "spool write failed" };

struct events {
	char path[PATH_MAX];
	/* fd, state writes, lanes and nlanes: any thread, under the lock. */
	pthread_mutex_t lock;
	int fd;
	enum events_sync sync; /* set before serving, then read only */
	/* Written under lock, read with an atomic load from any thread
	 * (/healthz, /metrics). */
	enum spool_state state;
	/* Atomic adds from the loops, atomic loads from /metrics. */
	unsigned long long errors[SPOOL_NCAUSES]; /* refused batches */
	unsigned long long syncs;                 /* fdatasyncs done */
	struct lane *lanes[EVENTS_MAX_LANES];
	unsigned nlanes;
};

json_t *
events_parse(const char *body, size_t len, char *err, size_t errlen)
{
	json_error_t jerr;
	json_t *doc = json_loadb(
	    body, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
	json_t *list, *item;
	size_t i;

	if (doc == NULL) {
		snprintf(err, errlen, "invalid JSON: %s", jerr.text);
		return NULL;
	}
	if (json_is_object(doc)) {
		list = json_array();
		json_array_append_new(list, doc);
		return list;
	}
	if (!json_is_array(doc)) {
		snprintf(err, errlen,
		    "expected an object or an array of "
		    "objects");
		json_decref(doc);
		return NULL;
	}
	if (json_array_size(doc) == 0) {
		snprintf(err, errlen, "empty array: no events");
		json_decref(doc);
		return NULL;
	}
	json_array_foreach(doc, i, item)
	{
		if (!json_is_object(item)) {
			snprintf(err, errlen, "event %zu is not an object", i);
			json_decref(doc);
			return NULL;
		}
	}
	return doc;
}

static int
spool_open(const char *path, char *err, size_t errlen)
{
	int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);

	if (fd < 0) {
		int rc = -errno;
		snprintf(err, errlen, "spool %s: %s", path, strerror(errno));
		return rc;
	}
	return fd;
}

/* Moves to state, logging the change. Under ev->lock. */
static void
spool_set_state(struct events *ev, enum spool_state state, int err)
{
	if (ev->state == state)
		return;
	__atomic_store_n(&ev->state, state, __ATOMIC_RELAXED);
	graced_log("spool_state",
	    json_pack("{s:s,s:s,s:s?}", "state", spool_names[state], "path",
	        ev->path, "error", err ? strerror(err) : NULL));
}

/* Whether the open file was unlinked (deleted, or rotated away with no
 * new file made). Under ev->lock. */
static int
spool_unlinked(struct events *ev)
{
	struct stat st;

	return ev->fd < 0 || (fstat(ev->fd, &st) == 0 && st.st_nlink == 0);
}

/* Makes sure the batch goes to a file that can be found: an unlinked spool
 * is recreated at its path, and if that fails nothing is written into the
 * deleted one. One fstat per batch. Under ev->lock; 0 or a negative
 * errno. */
static int
spool_ensure(struct events *ev)
{
	char err[PATH_MAX + 64];
	int fd;

	if (!spool_unlinked(ev))
		return 0;
	fd = spool_open(ev->path, err, sizeof(err));
	if (fd < 0)
		return fd;
	if (ev->fd >= 0)
		close(ev->fd);
	ev->fd = fd;
	graced_log("spool_reopened",
	    json_pack("{s:s,s:s}", "path", ev->path, "cause", "unlinked"));
	return 0;
}

static enum spool_state
spool_cause(int err)
{
	return err == ENOSPC || err == EDQUOT || err == EFBIG ? SPOOL_FULL :
	                                                        SPOOL_IO;
}

/* Appends the lane's batch with one write, then (--spool-sync batch) one
 * fdatasync, and returns SPOOL_OK or why the batch was refused, with the
 * errno in *err. The lock keeps a reopen from swapping or closing the
 * file under either; holding it through the fdatasync also means the
 * other lanes' batches grow meanwhile, and are synced together next. */
static enum spool_state
spool_write(struct lane *l, int *err)
{
	struct events *ev = l->ev;
	enum spool_state cause = SPOOL_OK;
	off_t start = -1;
	int rc, locked = 0;

	pthread_mutex_lock(&ev->lock);
	rc = spool_ensure(ev);
	if (rc < 0) {
		cause = SPOOL_GONE;
		goto out;
	}
	/* During an upgrade two generations append to the file: the lock
	 * keeps the other's lines out of the range a failed batch takes
	 * back (without it, where locks do not work, they could be lost). */
	locked = flock(ev->fd, LOCK_EX) == 0;
	start = lseek(ev->fd, 0, SEEK_END);
	while (evbuffer_get_length(l->batch) > 0) {
		int n = evbuffer_write(l->batch, ev->fd);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			rc = n < 0 ? -errno : -EIO;
			cause = spool_cause(-rc);
			goto out;
		}
	}
	if (ev->sync == EVENTS_SYNC_BATCH) {
		if (fdatasync(ev->fd) < 0) {
			rc = -errno;
			cause = spool_cause(-rc);
		} else {
			__atomic_add_fetch(&ev->syncs, 1, __ATOMIC_RELAXED);
		}
	}
out:
	if (cause != SPOOL_OK) {
		/* Take back the batch, also a part of it that was written
		 * before the limit hit: its events get a 503 and none of it
		 * stays in the file. */
		if (start >= 0 && ftruncate(ev->fd, start) < 0)
			graced_log("spool_truncate_failed",
			    json_pack("{s:s,s:s}", "path", ev->path, "error",
			        strerror(errno)));
		evbuffer_drain(l->batch, evbuffer_get_length(l->batch));
		__atomic_add_fetch(&ev->errors[cause], 1, __ATOMIC_RELAXED);
	}
	if (locked)
		flock(ev->fd, LOCK_UN);
	if (cause != SPOOL_IO)
		spool_set_state(ev, cause, -rc);
	pthread_mutex_unlock(&ev->lock);
	*err = -rc;
	return cause;
}

static void
flush_cb(evutil_socket_t fd, short what, void *arg)
{
	struct lane *l = arg;
	int err;
	enum spool_state cause = spool_write(l, &err);

	(void)fd;
	(void)what;
	if (cause == SPOOL_IO)
		graced_log("spool_write_failed",
		    json_pack("{s:s,s:s}", "path", l->ev->path, "error",
		        strerror(err)));
	for (size_t i = 0; i < l->nwaiting; i++) {
		struct waiting *wt = &l->waiting[i];
		if (wt->r == NULL)
			continue;
		graced_request_on_abort(wt->r, NULL, NULL);
		if (cause != SPOOL_OK) {
			graced_reply_error(wt->r, 503, spool_replies[cause]);
			continue;
		}
		l->written += wt->accepted;
		graced_reply_json(wt->r, 202,
		    json_pack("{s:I}", "accepted", (json_int_t)wt->accepted));
	}
	l->nwaiting = 0;
}

static void
waiting_aborted(struct graced_request *r, void *arg)
{
	struct lane *l = arg;

	for (size_t i = 0; i < l->nwaiting; i++)
		if (l->waiting[i].r == r)
			l->waiting[i].r = NULL;
}

static void
lane_free(struct lane *l)
{
	if (l->flush_ev != NULL)
		event_free(l->flush_ev);
	if (l->batch != NULL)
		evbuffer_free(l->batch);
	free(l->waiting);
	free(l);
}

/* The lane of the loop base, made on first use. */
static struct lane *
lane_get(struct events *ev, struct event_base *base)
{
	struct lane *l = NULL;

	pthread_mutex_lock(&ev->lock);
	for (unsigned i = 0; i < ev->nlanes; i++)
		if (ev->lanes[i]->base == base)
			l = ev->lanes[i];
	if (l == NULL && ev->nlanes < EVENTS_MAX_LANES) {
		l = calloc(1, sizeof(*l));
		if (l != NULL) {
			l->ev = ev;
			l->base = base;
			l->batch = evbuffer_new();
			l->flush_ev = event_new(base, -1, 0, flush_cb, l);
			if (l->batch == NULL || l->flush_ev == NULL) {
				lane_free(l);
				l = NULL;
			} else {
				ev->lanes[ev->nlanes++] = l;
			}
		}
	}
	pthread_mutex_unlock(&ev->lock);
	return l;
}

static void
events_post(struct graced_request *r, void *arg)
{
	struct lane *l = lane_get(arg, graced_request_base(r));
	size_t len, i;
	const char *body = graced_request_body(r, &len);
	char err[256];
	json_t *list, *item;

	if (l == NULL) {
		graced_reply_error(r, 503, "out of memory");
		return;
	}
	list = events_parse(body, len, err, sizeof(err));
	if (list == NULL) {
		graced_reply_error(r, 400, err);
		return;
	}
	if (l->nwaiting == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 64;
		struct waiting *bigger =
		    realloc(l->waiting, cap * sizeof(*bigger));
		if (bigger == NULL) {
			json_decref(list);
			graced_reply_error(r, 503, "out of memory");
			return;
		}
		l->waiting = bigger;
		l->cap = cap;
	}
	json_array_foreach(list, i, item)
	{
		char *line =
		    json_dumps(item, JSON_COMPACT | JSON_PRESERVE_ORDER);
		if (line != NULL) {
			evbuffer_add(l->batch, line, strlen(line));
			evbuffer_add(l->batch, "\n", 1);
		}
		free(line);
	}
	l->waiting[l->nwaiting].r = r;
	l->waiting[l->nwaiting].accepted = json_array_size(list);
	l->nwaiting++;
	json_decref(list);
	graced_request_on_abort(r, waiting_aborted, l);
	event_active(l->flush_ev, EV_TIMEOUT, 0);
}

static const struct graced_route events_routes[] = {
	{ "POST", "/v1/events", events_post },
};

static void
spool_close(struct events *ev)
{
	pthread_mutex_lock(&ev->lock);
	if (ev->fd >= 0) {
		if (fsync(ev->fd) < 0)
			graced_log("spool_fsync_failed",
			    json_pack("{s:s,s:s}", "path", ev->path, "error",
			        strerror(errno)));
		close(ev->fd);
		ev->fd = -1;
	}
	pthread_mutex_unlock(&ev->lock);
}

static unsigned long long
events_written(struct events *ev)
{
	unsigned long long n = 0;

	pthread_mutex_lock(&ev->lock);
	for (unsigned i = 0; i < ev->nlanes; i++)
		n += ev->lanes[i]->written;
	pthread_mutex_unlock(&ev->lock);
	return n;
}

static void
events_stop(struct graced_server *srv, double seconds_left, void *arg)
{
	struct events *ev = arg;

	(void)srv;
	(void)seconds_left;
	spool_close(ev);
	graced_log("spool_closed",
	    json_pack("{s:s,s:I}", "path", ev->path, "events",
	        (json_int_t)events_written(ev)));
}

struct events *
events_new(const char *path, char *err, size_t errlen)
{
	struct events *ev = calloc(1, sizeof(*ev));

	if (ev == NULL || strlen(path) >= sizeof(ev->path)) {
		snprintf(err, errlen, "spool %s: cannot be used", path);
		free(ev);
		return NULL;
	}
	strcpy(ev->path, path);
	pthread_mutex_init(&ev->lock, NULL);
	ev->fd = spool_open(path, err, errlen);
	if (ev->fd < 0) {
		events_free(ev);
		return NULL;
	}
	return ev;
}

/* /healthz's "spool" field: not ready unless the last write went
 * through. Any thread. */
static const char *
events_status(void *arg, int *ready)
{
	struct events *ev = arg;
	enum spool_state state = __atomic_load_n(&ev->state, __ATOMIC_RELAXED);

	*ready = state == SPOOL_OK;
	return spool_names[state];
}

/* The spool's lines on /metrics. Any thread. */
static void
events_metrics(struct evbuffer *out, void *arg)
{
	struct events *ev = arg;
	enum spool_state state = __atomic_load_n(&ev->state, __ATOMIC_RELAXED);

	evbuffer_add_printf(out,
	    "# HELP graced_spool_state 1 for the state the events spool is "
	    "in.\n# TYPE graced_spool_state gauge\n");
	for (int s = SPOOL_OK; s <= SPOOL_GONE; s++)
		evbuffer_add_printf(out,
		    "graced_spool_state{state=\"%s\"} %d\n", spool_names[s],
		    (int)state == s);
	evbuffer_add_printf(out,
	    "# HELP graced_spool_errors_total Spool writes that failed, "
	    "their requests answered 503.\n"
	    "# TYPE graced_spool_errors_total counter\n");
	for (int s = SPOOL_FULL; s < SPOOL_NCAUSES; s++)
		evbuffer_add_printf(out,
		    "graced_spool_errors_total{error=\"%s\"} %llu\n",
		    spool_names[s],
		    __atomic_load_n(&ev->errors[s], __ATOMIC_RELAXED));
	evbuffer_add_printf(out,
	    "# HELP graced_spool_syncs_total fdatasync calls before 202s "
	    "(--spool-sync batch).\n"
	    "# TYPE graced_spool_syncs_total counter\n"
	    "graced_spool_syncs_total %llu\n",
	    __atomic_load_n(&ev->syncs, __ATOMIC_RELAXED));
}

void
events_set_sync(struct events *ev, enum events_sync sync)
{
	ev->sync = sync;
}

int
events_attach(struct events *ev, struct graced_server *srv)
{
	int rc = graced_server_add_routes(srv, events_routes,
	    sizeof(events_routes) / sizeof(events_routes[0]), ev);

	if (rc == 0)
		rc = graced_server_add_status(srv, "spool", events_status, ev);
	if (rc == 0)
		rc = graced_server_add_metrics(srv, events_metrics, ev);
	return rc < 0 ? rc : graced_server_on_stop(srv, events_stop, ev);
}

int
events_reopen(struct events *ev)
{
	char err[PATH_MAX + 64];
	int fd = spool_open(ev->path, err, sizeof(err)), old;

	if (fd < 0) {
		graced_log(
		    "spool_reopen_failed", json_pack("{s:s}", "error", err));
		/* Still appending to a file nobody can find: refuse. */
		pthread_mutex_lock(&ev->lock);
		if (spool_unlinked(ev))
			spool_set_state(ev, SPOOL_GONE, -fd);
		pthread_mutex_unlock(&ev->lock);
		return fd;
	}
	/* Batches in progress go to whichever file is current when they are
	 * written; each is written whole. */
	pthread_mutex_lock(&ev->lock);
	old = ev->fd;
	ev->fd = fd;
	if (ev->state == SPOOL_GONE)
		spool_set_state(ev, SPOOL_OK, 0);
	pthread_mutex_unlock(&ev->lock);
	if (old >= 0) {
		fsync(old);
		close(old);
	}
	graced_log("spool_reopened", json_pack("{s:s}", "path", ev->path));
	return 0;
}

void
events_free(struct events *ev)
{
	if (ev == NULL)
		return;
	spool_close(ev);
	for (unsigned i = 0; i < ev->nlanes; i++)
		lane_free(ev->lanes[i]);
	pthread_mutex_destroy(&ev->lock);
	free(ev);
}
