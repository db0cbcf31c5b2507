/* The events application. Events of all the requests of one loop iteration
 * are written with one write(2) (group commit) before their 202s are sent,
 * so an accepted event is always in the spool file; the stop hook fsyncs it
 * before the process exits. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "events.h"
#include "graced.h"

struct waiting {
	struct graced_request *r; /* NULL once aborted */
	size_t accepted;
};

struct events {
	char path[PATH_MAX];
	int fd;
	struct evbuffer *batch;  /* lines not written yet */
	struct waiting *waiting; /* requests whose lines are in batch */
	size_t nwaiting, cap;
	struct event *flush_ev; /* end of this loop iteration: write */
	unsigned long long written;
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
spool_write(struct events *ev)
{
	off_t start = lseek(ev->fd, 0, SEEK_END);

	while (evbuffer_get_length(ev->batch) > 0) {
		int n = evbuffer_write(ev->batch, ev->fd);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			int rc = errno ? -errno : -EIO;
			/* Take back a partial batch: its events get a 503
			 * and are not in the file at all. */
			if (start >= 0 && ftruncate(ev->fd, start) < 0)
				rc = -errno;
			evbuffer_drain(
			    ev->batch, evbuffer_get_length(ev->batch));
			return rc;
		}
	}
	return 0;
}

static void
flush_cb(evutil_socket_t fd, short what, void *arg)
{
	struct events *ev = arg;
	int rc = spool_write(ev);

	(void)fd;
	(void)what;
	if (rc < 0)
		graced_log("spool_write_failed",
		    json_pack(
		        "{s:s,s:s}", "path", ev->path, "error", strerror(-rc)));
	for (size_t i = 0; i < ev->nwaiting; i++) {
		struct waiting *wt = &ev->waiting[i];
		if (wt->r == NULL)
			continue;
		graced_request_on_abort(wt->r, NULL, NULL);
		if (rc < 0) {
			graced_reply_error(wt->r, 503, "spool write failed");
			continue;
		}
		ev->written += wt->accepted;
		graced_reply_json(wt->r, 202,
		    json_pack("{s:I}", "accepted", (json_int_t)wt->accepted));
	}
	ev->nwaiting = 0;
}

static void
waiting_aborted(struct graced_request *r, void *arg)
{
	struct events *ev = arg;

	for (size_t i = 0; i < ev->nwaiting; i++)
		if (ev->waiting[i].r == r)
			ev->waiting[i].r = NULL;
}

static void
events_post(struct graced_request *r, void *arg)
{
	struct events *ev = arg;
	size_t len, i;
	const char *body = graced_request_body(r, &len);
	char err[256];
	json_t *list = events_parse(body, len, err, sizeof(err)), *item;

	if (list == NULL) {
		graced_reply_error(r, 400, err);
		return;
	}
	if (ev->nwaiting == ev->cap) {
		size_t cap = ev->cap ? ev->cap * 2 : 64;
		struct waiting *bigger =
		    realloc(ev->waiting, cap * sizeof(*bigger));
		if (bigger == NULL) {
			json_decref(list);
			graced_reply_error(r, 503, "out of memory");
			return;
		}
		ev->waiting = bigger;
		ev->cap = cap;
	}
	json_array_foreach(list, i, item)
	{
		char *line =
		    json_dumps(item, JSON_COMPACT | JSON_PRESERVE_ORDER);
		if (line != NULL) {
			evbuffer_add(ev->batch, line, strlen(line));
			evbuffer_add(ev->batch, "\n", 1);
		}
		free(line);
	}
	ev->waiting[ev->nwaiting].r = r;
	ev->waiting[ev->nwaiting].accepted = json_array_size(list);
	ev->nwaiting++;
	json_decref(list);
	graced_request_on_abort(r, waiting_aborted, ev);
	if (ev->flush_ev == NULL)
		ev->flush_ev =
		    event_new(graced_request_base(r), -1, 0, flush_cb, ev);
	if (ev->flush_ev == NULL)
		flush_cb(-1, 0, ev);
	else
		event_active(ev->flush_ev, EV_TIMEOUT, 0);
}

static const struct graced_route events_routes[] = {
	{ "POST", "/v1/events", events_post },
};

static int
spool_open(struct events *ev, char *err, size_t errlen)
{
	int fd =
	    open(ev->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);

	if (fd < 0) {
		int rc = -errno;
		snprintf(
		    err, errlen, "spool %s: %s", ev->path, strerror(errno));
		return rc;
	}
	ev->fd = fd;
	return 0;
}

static void
spool_close(struct events *ev)
{
	if (ev->fd < 0)
		return;
	if (evbuffer_get_length(ev->batch) > 0)
		flush_cb(-1, 0, ev);
	if (fsync(ev->fd) < 0)
		graced_log("spool_fsync_failed",
		    json_pack("{s:s,s:s}", "path", ev->path, "error",
		        strerror(errno)));
	close(ev->fd);
	ev->fd = -1;
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
	        (json_int_t)ev->written));
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
	ev->fd = -1;
	ev->batch = evbuffer_new();
	if (ev->batch == NULL || spool_open(ev, err, errlen) < 0) {
		events_free(ev);
		return NULL;
	}
	return ev;
}

int
events_attach(struct events *ev, struct graced_server *srv)
{
	int rc = graced_server_add_routes(srv, events_routes,
	    sizeof(events_routes) / sizeof(events_routes[0]), ev);

	return rc < 0 ? rc : graced_server_on_stop(srv, events_stop, ev);
}

int
events_reopen(struct events *ev)
{
	char err[PATH_MAX + 64];
	int rc;

	spool_close(ev);
	rc = spool_open(ev, err, sizeof(err));
	graced_log("spool_reopened",
	    rc < 0 ? json_pack("{s:s}", "error", err) :
	             json_pack("{s:s}", "path", ev->path));
	return rc;
}

void
events_free(struct events *ev)
{
	if (ev == NULL)
		return;
	spool_close(ev);
	if (ev->flush_ev != NULL)
		event_free(ev->flush_ev);
	if (ev->batch != NULL)
		evbuffer_free(ev->batch);
	free(ev->waiting);
	free(ev);
}
