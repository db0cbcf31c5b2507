/* The smallest graced service: one route, and a drain on SIGTERM or SIGINT.
 *
 *   cc hello.c $(pkg-config --cflags --libs graced) -o hello
 *   ./hello --listen 127.0.0.1:8080 --drain-delay 1
 *
 * Every library option can be given as --NAME VALUE, spelled as for
 * `graced serve` (docs/library.md). */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include <graced.h>

static void
hello(struct graced_request *req, void *arg)
{
	(void)arg;
	graced_reply_json(req, 200, json_pack("{s:s}", "hello", "world"));
}

static const struct graced_route routes[] = {
	{ "GET", "/hello", hello },
};

/* SIGTERM (docker stop, a Kubernetes rollout) and SIGINT (Ctrl-C) begin the
 * drain: /healthz fails at once, requests are served for --drain-delay
 * seconds more, then the listener closes without resetting its queue and
 * graced_server_run() returns when the last request is answered. */
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
			    stderr, "hello: bad option %s %s\n", argv[i], err);
			goto out;
		}
	}
	rc = 1;
	srv = graced_server_new(cfg);
	if (srv == NULL || graced_server_add_routes(srv, routes, 1, NULL) < 0)
		goto out;
	term = evsignal_new(graced_server_base(srv), SIGTERM, on_signal, srv);
	intr = evsignal_new(graced_server_base(srv), SIGINT, on_signal, srv);
	if (term == NULL || intr == NULL || event_add(term, NULL) < 0 ||
	    event_add(intr, NULL) < 0 || graced_server_start(srv) < 0)
		goto out;
	rc = graced_server_run(srv); /* 0: clean drain, 1: cut off */
out:
	if (term != NULL)
		event_free(term);
	if (intr != NULL)
		event_free(intr);
	graced_server_free(srv);
	graced_config_free(cfg);
	return rc;
}
