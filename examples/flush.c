/* Work that is acknowledged first and done later: POST /work queues its body
 * and answers 202; the queue is written out (to stdout, one item a line)
 * when the server stops. The on_stop hook runs after the last request,
 * before graced_server_run() returns, with the seconds left before the
 * shutdown timeout: it flushes what fits in that time and logs what it did.
 *
 *   cc flush.c $(pkg-config --cflags --libs graced) -o flush
 *   ./flush --listen 127.0.0.1:8080 > work.txt
 */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <graced.h>

#define QUEUE_MAX 1024

/* Filled by the handlers on the workers' threads, emptied by on_stop. */
static pthread_mutex_t queue_lock = PTHREAD_MUTEX_INITIALIZER;
static char *queue[QUEUE_MAX];
static size_t queued;

static void
work_handler(struct graced_request *req, void *arg)
{
	size_t len, n = 0;
	const char *body = graced_request_body(req, &len);
	char *item = strndup(body != NULL ? body : "", len);

	(void)arg;
	pthread_mutex_lock(&queue_lock);
	if (item != NULL && queued < QUEUE_MAX) {
		queue[queued++] = item;
		n = queued;
		item = NULL;
	}
	pthread_mutex_unlock(&queue_lock);
	if (item != NULL || n == 0) {
		free(item);
		graced_reply_error(req, 503, "queue full");
		return;
	}
	graced_reply_json(
	    req, 202, json_pack("{s:I}", "queued", (json_int_t)n));
}

static const struct graced_route routes[] = {
	{ "POST", "/work", work_handler },
};

static double
now_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Writes the queue out, stopping when the time left is used up: what is
 * not written then is counted as lost in the log line. */
static void
on_stop(struct graced_server *srv, double seconds_left, void *arg)
{
	double deadline = now_seconds() + seconds_left;
	size_t done = 0;

	(void)srv;
	(void)arg;
	pthread_mutex_lock(&queue_lock);
	for (size_t i = 0; i < queued; i++) {
		if (now_seconds() < deadline && puts(queue[i]) >= 0)
			done++;
		free(queue[i]);
	}
	fflush(stdout);
	graced_log("flushed",
	    json_pack("{s:I,s:I,s:f}", "items", (json_int_t)done, "lost",
	        (json_int_t)(queued - done), "seconds_left", seconds_left));
	queued = 0;
	pthread_mutex_unlock(&queue_lock);
}

static void
on_signal(evutil_socket_t signo, short what, void *arg)
{
	(void)what;
	graced_server_drain(arg, signo == SIGTERM ? "SIGTERM" : "SIGINT");
}

int
main(int argc, char **argv)
{
	struct graced_config *cfg = graced_config_new();
	struct graced_server *srv = NULL;
	struct event *term = NULL, *intr = NULL;
	char err[256] = "";
	int rc = 2;

	for (int i = 1; i < argc; i += 2) {
		if (i + 1 == argc || strncmp(argv[i], "--", 2) != 0 ||
		    graced_config_set(
		        cfg, argv[i] + 2, argv[i + 1], err, sizeof(err)) < 0) {
			fprintf(
			    stderr, "flush: bad option %s %s\n", argv[i], err);
			goto out;
		}
	}
	rc = 1;
	srv = graced_server_new(cfg);
	if (srv == NULL || graced_server_add_routes(srv, routes, 1, NULL) < 0 ||
	    graced_server_on_stop(srv, on_stop, NULL) < 0)
		goto out;
	term = evsignal_new(graced_server_base(srv), SIGTERM, on_signal, srv);
	intr = evsignal_new(graced_server_base(srv), SIGINT, on_signal, srv);
	if (term == NULL || intr == NULL || event_add(term, NULL) < 0 ||
	    event_add(intr, NULL) < 0 || graced_server_start(srv) < 0)
		goto out;
	rc = graced_server_run(srv);
out:
	if (term != NULL)
		event_free(term);
	if (intr != NULL)
		event_free(intr);
	graced_server_free(srv);
	graced_config_free(cfg);
	return rc;
}
