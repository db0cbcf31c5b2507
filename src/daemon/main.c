/* The graced daemon: picks the subcommand, runs the supervisor (or, in a
 * generation it started, the server), wires signals to the drain and turns
 * its outcome into the exit status (0 clean, 1 cut off or failed to start,
 * 2 bad usage). */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include <event2/event.h>

#include "client.h"
#include "events.h"
#include "generation.h"
#include "graced.h"
#include "options.h"
#include "supervisor.h"

struct daemon {
	struct graced_server *srv;
	struct events *events;
	struct generation *gen;
};

static void
on_signal(evutil_socket_t signo, short what, void *arg)
{
	struct daemon *d = arg;

	(void)what;
	switch (signo) {
	case SIGTERM: graced_server_drain(d->srv, "SIGTERM"); break;
	case SIGINT: graced_server_drain(d->srv, "SIGINT"); break;
	case SIGQUIT: graced_server_stop_now(d->srv, "SIGQUIT"); break;
	case SIGHUP:
		graced_server_reopen_log(d->srv);
		events_reopen(d->events);
		break;
	case SIGUSR2: generation_usr2(d->gen); break;
	}
}

/* argc, argv: the flags; all: the whole command line, for the supervisor
 * to start generations with. */
static int
serve(int argc, char **argv, char **all)
{
	static const int signals[] = { SIGTERM, SIGINT, SIGQUIT, SIGHUP,
		SIGUSR2 };
	struct event *sigev[5] = { NULL };
	struct daemon d = { NULL, NULL, NULL };
	struct options o;
	char err[512];
	int rc = 1;

	if (options_parse(&o, argc, argv, err, sizeof(err)) < 0) {
		fprintf(stderr, "graced: %s\n", err);
		options_free(&o);
		return 2;
	}
	if (o.help) {
		options_usage(stdout);
		options_free(&o);
		return 0;
	}
	/* The process that was started supervises; the generations it starts
	 * (with the control link set) serve. */
	if (o.supervisor && getenv(SUPERVISOR_CONTROL_ENV) == NULL) {
		rc = supervisor_run(&o, argc, all);
		options_free(&o);
		return rc;
	}
	d.srv = graced_server_new(o.cfg);
	if (d.srv == NULL)
		goto out;
	d.gen = generation_new(d.srv);
	if (d.gen == NULL)
		goto out;
	d.events = events_new(o.spool, err, sizeof(err));
	if (d.events == NULL) {
		graced_log("start_failed", json_pack("{s:s}", "cause", err));
		goto out;
	}
	events_set_sync(d.events, o.spool_sync);
	/* Over a file-size limit (RLIMIT_FSIZE, LimitFSIZE=) a write must fail
	 * with EFBIG, which the spool answers with 503, rather than kill the
	 * process halfway through a batch. */
	signal(SIGXFSZ, SIG_IGN);
	/* Signals are caught from before the listeners are bound: a SIGTERM
	 * right after "serving" is logged must drain, not kill. */
	for (size_t i = 0; i < 5; i++) {
		sigev[i] = evsignal_new(
		    graced_server_base(d.srv), signals[i], on_signal, &d);
		/* Before any I/O of the same loop iteration: the readiness
		 * flip is not delayed by a busy loop. */
		event_priority_set(sigev[i], 0);
		event_add(sigev[i], NULL);
	}
	if (events_attach(d.events, d.srv) < 0 ||
	    graced_server_start(d.srv) < 0)
		goto out;
	generation_ready(d.gen);
	rc = graced_server_run(d.srv);
out:
	for (size_t i = 0; i < 5; i++)
		if (sigev[i] != NULL)
			event_free(sigev[i]);
	/* The events app keeps an event on each worker's loop: it goes first,
	 * while those loops exist. No connection is left once the server has
	 * run (or failed to start), so no abort callback reaches it after. */
	events_free(d.events);
	generation_free(d.gen);
	graced_server_free(d.srv);
	options_free(&o);
	return rc;
}

int
main(int argc, char **argv)
{
	const char *cmd = argc > 1 ? argv[1] : "serve";

	if (strcmp(cmd, "drain") == 0)
		return client_drain(argc - 2, argv + 2);
	if (strcmp(cmd, "probe") == 0)
		return client_probe(argc - 2, argv + 2);
	if (strcmp(cmd, "upgrade") == 0)
		return client_upgrade(argc - 2, argv + 2);
	if (strcmp(cmd, "serve") == 0)
		return serve(argc - 2, argv + 2, argv);
	if (strcmp(cmd, "help") == 0) {
		options_usage(stdout);
		return 0;
	}
	/* The daemon and the library are one package with one version. */
	if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "version") == 0) {
		printf("graced %s\n", graced_version());
		return 0;
	}
	if (cmd[0] == '-')
		return serve(argc - 1, argv + 1, argv);
	fprintf(stderr,
	    "graced: unknown command '%s' (serve, drain, probe, upgrade, "
	    "version)\n",
	    cmd);
	return 2;
}
