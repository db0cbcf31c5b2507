/* The supervisor (supervisor.h). One event loop: the signals, a control
 * link per generation (a socketpair, one line per message), and two
 * timers. The messages:
 *   generation -> supervisor  READY, DRAINING, CLOSED (its listeners),
 *                             UPGRADE
 *   supervisor -> generation  STOP (hand over), STATS OK FAILED DRAINING,
 *                             UPGRADE STATUS {json} (the answer to UPGRADE)
 * An upgrade: spawn the next generation (upgrade_begin), wait for its
 * READY (--upgrade-timeout, then SIGKILL), let both serve for the
 * probation, then tell the old one STOP (upgrade_handover) and, once it
 * has closed its listeners, report the upgrade done (upgrade_done). Any
 * exit of the new one before the STOP is a rollback (upgrade_failed): the
 * old one never stopped accepting. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "activation.h"
#include "graced.h"
#include "listener.h"
#include "log.h"
#include "notify.h"
#include "supervisor.h"
#include "util.h"

extern char **environ;

enum role {
	GEN_STARTING,  /* the next generation, not ready yet */
	GEN_PROBATION, /* the next generation, ready, both serve */
	GEN_CURRENT,   /* the one serving */
	GEN_OLD,       /* handed over, finishing its requests */
	GEN_FAILED,    /* an upgrade that was rolled back; being reaped */
};

static const char *const role_names[] = { "starting", "probation", "current",
	"old", "failed" };

struct gen {
	struct sup *s;
	unsigned n; /* the generation number */
	pid_t pid;
	enum role role;
	int ready;      /* it sent READY */
	int signo;      /* a signal to pass on once it is ready, or 0 */
	int draining;   /* it said DRAINING: its own drain began */
	uint64_t since; /* started (ms) */
	struct bufferevent *link; /* NULL once closed */
	struct gen *next;
};

struct sup {
	const struct options *o;
	struct event_base *base;
	char exe[PATH_MAX]; /* what each generation is started from */
	char **argv;
	struct activation lis; /* the listeners, held for every generation */
	char address[300];     /* the public one, for STATUS= */
	struct gen *gens;
	struct gen *current; /* NULL before the first is ready */
	struct gen *next;    /* the upgrade in progress, or NULL */
	struct gen *closing; /* the old one told STOP, listeners still open */
	struct gen *asker;   /* the generation whose admin asked for it */
	struct event *upgrade_ev; /* not ready in time, or probation over */
	unsigned ok, failed;      /* upgrades */
	int stopping;             /* the service is ending */
	int status;               /* the exit status, from the current one */
};

/* The executable the generations are started from: argv[0] made absolute
 * now (a relative path would break after a chdir) or found on PATH, as
 * the shell found it. A path, not /proc/self/exe: a replaced file is the
 * new binary. */
static int
find_exe(const char *argv0, char *out, size_t len)
{
	const char *path = getenv("PATH");
	char cwd[PATH_MAX];

	if (argv0[0] == '/')
		return snprintf(out, len, "%s", argv0) < (int)len ? 0 : -1;
	if (strchr(argv0, '/') != NULL)
		return getcwd(cwd, sizeof(cwd)) != NULL &&
		        snprintf(out, len, "%s/%s", cwd, argv0) < (int)len ?
		    0 :
		    -1;
	while (path != NULL && *path != '\0') {
		size_t n = strcspn(path, ":");
		snprintf(out, len, "%.*s/%s", (int)n, path, argv0);
		if (n > 0 && access(out, X_OK) == 0)
			return 0;
		path += n + (path[n] == ':');
	}
	return -1;
}

/* Binds the listeners as graced_server_start would (one per worker in a
 * SO_REUSEPORT group whose first is bound alone, so a second instance
 * fails), or takes those passed by socket activation. 0 or -1 logged. */
static int
listeners_open(struct sup *s)
{
	const struct graced_config *cfg = s->o->cfg;
	struct config_addr addr = cfg->listen;
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	unsigned n = cfg->workers ? cfg->workers :
	    cpus > 0              ? (unsigned)cpus :
	                            1;
	char err[512];
	int rc = activation_take(&s->lis, err, sizeof(err));

	if (rc < 0) {
		/* As graced_server_new says it. */
		log_event("start_failed",
		    json_pack("{s:s,s:s}", "cause",
		        "cannot adopt the passed listeners", "error", err));
		return -1;
	}
	/* Passed sockets stay the manager's: never filtered by anyone. */
	s->lis.owned = s->lis.nhttp == 0;
	/* More workers than sockets share them (graced_server_start). */
	if (n > ACTIVATION_MAX)
		n = ACTIVATION_MAX;
	for (unsigned i = 0; s->lis.owned && i < n; i++) {
		int fd = listener_open(&addr,
		    n == 1     ? LISTENER_ALONE :
		        i == 0 ? LISTENER_FIRST :
		                 LISTENER_JOIN,
		    err, sizeof(err));
		if (fd < 0)
			goto fail;
		s->lis.http[s->lis.nhttp++] = fd;
		if (i == 0) {
			/* Port 0: the others join the port the first got. */
			listener_address(fd, s->address, sizeof(s->address));
			snprintf(addr.port, sizeof(addr.port), "%s",
			    strrchr(s->address, ':') + 1);
		}
	}
	if (s->lis.admin < 0) {
		s->lis.admin = listener_open(
		    &cfg->admin_listen, LISTENER_ALONE, err, sizeof(err));
		if (s->lis.admin < 0)
			goto fail;
	}
	listener_address(s->lis.http[0], s->address, sizeof(s->address));
	return 0;
fail:
	log_event("start_failed", json_pack("{s:s}", "cause", err));
	return -1;
}

/* An environment variable "NAME=value", malloc'd. */
static char *
env_var(const char *name, const char *fmt, ...)
{
	char value[1024], *out = NULL;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(value, sizeof(value), fmt, ap);
	va_end(ap);
	if (asprintf(&out, "%s=%s", name, value) < 0)
		return NULL;
	return out;
}

/* Which inherited variables a generation does not get: the supervisor's
 * own hand-over ones, and NOTIFY_SOCKET (the supervisor speaks to the
 * service manager; a generation would be refused as not the main PID). */
static int
env_dropped(const char *var)
{
	static const char *const names[] = { "LISTEN_PID=", "LISTEN_FDS=",
		"LISTEN_FDNAMES=", "NOTIFY_SOCKET=", "GRACED_LISTENERS_OWNED=",
		SUPERVISOR_CONTROL_ENV "=", SUPERVISOR_GENERATION_ENV "=" };

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strncmp(var, names[i], strlen(names[i])) == 0)
			return 1;
	return 0;
}

/* Starts generation g as a child: the listeners at fds 3.., the admin one
 * next, the control link after it. The environment is built before the
 * fork: the child only calls what is safe in a child of a process with
 * threads (the log writer), then execs. Returns the pid or -1. */
static pid_t
spawn(struct sup *s, struct gen *g, int link)
{
	int src[ACTIVATION_MAX + 2], tmp[ACTIVATION_MAX + 2];
	unsigned nfd = 0, nenv = 0, high = 0;
	char names[ACTIVATION_MAX * 5 + 8] = "", **envp, *pidvar;
	pid_t pid;

	for (unsigned i = 0; i < s->lis.nhttp; i++) {
		src[nfd++] = s->lis.http[i];
		strcat(names, "http:");
	}
	strcat(names, "admin");
	src[nfd++] = s->lis.admin;
	src[nfd++] = link;
	for (unsigned i = 0; i < nfd; i++)
		if ((unsigned)src[i] > high)
			high = (unsigned)src[i];
	if (high < 3 + nfd)
		high = 3 + nfd;
	for (char **e = environ; *e != NULL; e++)
		nenv++;
	envp = calloc(nenv + 8, sizeof(*envp));
	/* LISTEN_PID is the child's: written in place after the fork. */
	pidvar = env_var("LISTEN_PID", "%20s", "");
	if (envp == NULL || pidvar == NULL) {
		free(envp);
		free(pidvar);
		return -1;
	}
	nenv = 0;
	for (char **e = environ; *e != NULL; e++)
		if (!env_dropped(*e))
			envp[nenv++] = *e;
	envp[nenv++] = pidvar;
	envp[nenv++] = env_var("LISTEN_FDS", "%u", nfd - 1);
	envp[nenv++] = env_var("LISTEN_FDNAMES", "%s", names);
	envp[nenv++] = env_var(SUPERVISOR_CONTROL_ENV, "%u", 3 + nfd - 1);
	envp[nenv++] = env_var(SUPERVISOR_GENERATION_ENV, "%u", g->n);
	if (s->lis.owned)
		envp[nenv++] = env_var("GRACED_LISTENERS_OWNED", "1");
	pid = fork();
	if (pid == 0) {
		struct sigaction dfl;
		sigset_t none;
		char *p = pidvar + strlen("LISTEN_PID=");
		char digits[24];
		int nd = 0;

		for (pid_t v = getpid(); v > 0; v /= 10)
			digits[nd++] = (char)('0' + v % 10);
		while (nd > 0)
			*p++ = digits[--nd];
		*p = '\0';
		/* Above every source and target, then into place (dup2 clears
		 * close-on-exec). */
		for (unsigned i = 0; i < nfd; i++)
			if ((tmp[i] = fcntl(src[i], F_DUPFD, (int)high + 1)) <
			    0)
				_exit(127);
		for (unsigned i = 0; i < nfd; i++)
			if (dup2(tmp[i], 3 + (int)i) < 0 || close(tmp[i]) < 0)
				_exit(127);
		/* A group of its own: a terminal's ^C reaches the supervisor
		 * alone (which passes it on once), and a generation that is
		 * rolled back is killed with whatever it started. */
		setpgid(0, 0);
		memset(&dfl, 0, sizeof(dfl));
		dfl.sa_handler = SIG_DFL;
		sigaction(SIGPIPE, &dfl, NULL);
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		execve(s->exe, s->argv, envp);
		_exit(127);
	}
	for (unsigned i = nenv - (s->lis.owned ? 6 : 5); i < nenv; i++)
		free(envp[i]);
	free(envp);
	return pid;
}

static void
send_line(struct gen *g, const char *fmt, ...)
{
	va_list ap;

	if (g->link == NULL)
		return;
	va_start(ap, fmt);
	evbuffer_add_vprintf(bufferevent_get_output(g->link), fmt, ap);
	va_end(ap);
	evbuffer_add(bufferevent_get_output(g->link), "\n", 1);
}

/* Older generations still finishing their requests. */
static unsigned
old_count(const struct sup *s)
{
	unsigned n = 0;

	for (const struct gen *g = s->gens; g != NULL; g = g->next)
		n += g->role == GEN_OLD;
	return n;
}

/* What /healthz and /metrics of each generation show of the others. */
static void
send_stats(struct sup *s)
{
	for (struct gen *g = s->gens; g != NULL; g = g->next)
		send_line(g, "STATS %u %u %u", s->ok, s->failed, old_count(s));
}

/* Passes sig on to g now, or once it is ready: a generation that is still
 * starting may not have its handlers yet, and would die of it. */
static void
pass_signal(struct gen *g, int sig)
{
	if (g->ready || sig == SIGQUIT || sig == SIGKILL)
		kill(g->pid, sig);
	else if (sig != SIGHUP)
		g->signo = sig;
}

static void
reply(struct sup *s, int status, json_t *body)
{
	char *text = json_dumps(body, JSON_COMPACT);

	if (s->asker != NULL && text != NULL)
		send_line(s->asker, "UPGRADE %d %s", status, text);
	s->asker = NULL;
	free(text);
	json_decref(body);
}

static void
upgrade_failed(struct sup *s, const char *why)
{
	struct gen *g = s->next;
	unsigned from = s->current ? s->current->n : 0;

	s->next = NULL;
	g->role = GEN_FAILED;
	s->failed++;
	/* Not ready: it serves nothing yet (a ready one drains, stop_all).
	 * Its whole group goes: a wrapper's children would hold the
	 * listeners. */
	if (!g->ready)
		kill(-g->pid, SIGKILL);
	event_del(s->upgrade_ev);
	log_event("upgrade_failed",
	    json_pack("{s:I,s:I,s:s,s:I,s:I}", "generation", (json_int_t)g->n,
	        "pid", (json_int_t)g->pid, "reason", why, "ms",
	        (json_int_t)(now_ms() - g->since), "serving",
	        (json_int_t)from));
	notify_send("READY=1\nSTATUS=upgrade to generation %u failed (%s); "
	            "generation %u serves",
	    g->n, why, from);
	reply(s, 500,
	    json_pack("{s:s,s:s,s:i,s:I}", "result", "failed", "error", why,
	        "status", 500, "generation", (json_int_t)from));
	send_stats(s);
}

static int spawn_gen(struct sup *s, unsigned n, enum role role);

/* Starts an upgrade, or refuses it with the reason. asker: the generation
 * whose admin listener asked (NULL: SIGUSR2). */
static void
upgrade_begin(struct sup *s, struct gen *asker, const char *by)
{
	struct timeval timeout = seconds_tv(s->o->upgrade_timeout);
	const char *refusal = NULL;
	char busy[96];

	if (s->stopping)
		refusal = "the service is stopping";
	else if (s->next != NULL || s->closing != NULL) {
		snprintf(busy, sizeof(busy),
		    "an upgrade to generation %u is in progress",
		    s->next != NULL ? s->next->n : s->current->n);
		refusal = busy;
	} else if (s->current == NULL || !s->current->ready)
		refusal = "the service is not serving yet";
	if (refusal != NULL) {
		log_event("upgrade_refused",
		    json_pack("{s:s,s:s}", "reason", refusal, "by", by));
		if (asker != NULL)
			send_line(asker,
			    "UPGRADE 409 {\"result\":\"refused\",\"error\":"
			    "\"%s\",\"status\":409}",
			    refusal);
		return;
	}
	s->asker = asker;
	if (spawn_gen(s, s->current->n + 1, GEN_STARTING) < 0) {
		s->asker = NULL;
		s->failed++;
		log_event("upgrade_failed",
		    json_pack("{s:s,s:s}", "reason", "cannot start a process",
		        "error", strerror(errno)));
		if (asker != NULL)
			send_line(asker,
			    "UPGRADE 500 {\"result\":\"failed\",\"error\":"
			    "\"cannot start a process\",\"status\":500}");
		return;
	}
	log_event("upgrade_begin",
	    json_pack("{s:I,s:I,s:I,s:s,s:s}", "generation",
	        (json_int_t)s->next->n, "pid", (json_int_t)s->next->pid, "from",
	        (json_int_t)s->current->n, "by", by, "exe", s->exe));
	notify_send("RELOADING=1\nMONOTONIC_USEC=%llu\nSTATUS=upgrading to "
	            "generation %u",
	    (unsigned long long)now_us(), s->next->n);
	event_add(s->upgrade_ev, &timeout);
}

/* The old generation has closed its listeners (or exited, or took too
 * long): a new connection now surely reaches the new one, and the upgrade
 * is done. */
static void
upgrade_done(struct sup *s)
{
	struct gen *g = s->current, *old = s->closing;

	s->closing = NULL;
	event_del(s->upgrade_ev);
	s->ok++;
	log_event("upgrade_ready",
	    json_pack("{s:I,s:I,s:I,s:I}", "generation", (json_int_t)g->n,
	        "pid", (json_int_t)g->pid, "ms",
	        (json_int_t)(now_ms() - g->since), "old_pid",
	        (json_int_t)old->pid));
	notify_send(
	    "READY=1\nSTATUS=serving on %s (generation %u)", s->address, g->n);
	reply(s, 200,
	    json_pack("{s:s,s:I,s:I,s:I}", "result", "ok", "generation",
	        (json_int_t)g->n, "pid", (json_int_t)g->pid, "ms",
	        (json_int_t)(now_ms() - g->since)));
	send_stats(s);
}

/* The probation is over: the new generation serves, the old hands over.
 * Closing its listeners takes it a few milliseconds; the bound is for a
 * generation that does not say so. */
static void
upgrade_handover(struct sup *s)
{
	struct timeval bound = { SUPERVISOR_CLOSE_MS / 1000,
		(SUPERVISOR_CLOSE_MS % 1000) * 1000 };
	struct gen *g = s->next, *old = s->current;

	s->next = NULL;
	s->current = g;
	g->role = GEN_CURRENT;
	old->role = GEN_OLD;
	s->closing = old;
	send_line(old, "STOP");
	event_add(s->upgrade_ev, &bound);
}

static void
upgrade_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sup *s = arg;
	char why[96];

	(void)fd;
	(void)what;
	if (s->closing != NULL) {
		upgrade_done(s);
		return;
	}
	if (s->next == NULL)
		return;
	if (s->next->role == GEN_PROBATION) {
		upgrade_handover(s);
		return;
	}
	snprintf(why, sizeof(why), "not ready within %g s (killed)",
	    s->o->upgrade_timeout);
	upgrade_failed(s, why);
}

/* The service ends: every generation drains (or stops, for SIGQUIT) but
 * the old ones, already handing over, and self, one that began its own
 * drain (POST /admin/drain reached it), which the others then follow. */
static void
stop_all(struct sup *s, int sig, const char *cause, struct gen *self)
{
	if (!s->stopping)
		notify_send("STOPPING=1\nSTATUS=draining (%s)", cause);
	s->stopping = 1;
	/* No generation will be started any more: the ones running hold the
	 * listeners, and the last to close them does it without resetting
	 * their queue (its drain). A copy kept here would hold connections
	 * that nobody accepts until we exit. */
	activation_close(&s->lis);
	if (s->next != NULL)
		upgrade_failed(s, "the service is stopping");
	for (struct gen *g = s->gens; g != NULL; g = g->next)
		if (g != self && (g->role != GEN_OLD || sig == SIGQUIT))
			pass_signal(g, sig);
}

static void
gen_ready(struct sup *s, struct gen *g)
{
	struct timeval probation = { SUPERVISOR_PROBATION_MS / 1000,
		(SUPERVISOR_PROBATION_MS % 1000) * 1000 };

	g->ready = 1;
	log_event("generation_ready",
	    json_pack("{s:I,s:I,s:s,s:I}", "generation", (json_int_t)g->n,
	        "pid", (json_int_t)g->pid, "role", role_names[g->role], "ms",
	        (json_int_t)(now_ms() - g->since)));
	if (g->signo != 0)
		kill(g->pid, g->signo);
	if (g->signo != 0 || g->role == GEN_FAILED)
		return;
	if (g->role == GEN_CURRENT) {
		notify_send("READY=1\nMAINPID=%ld\nSTATUS=serving on %s "
		            "(generation %u)",
		    (long)getpid(), s->address, g->n);
		send_stats(s);
	} else if (g->role == GEN_STARTING) {
		g->role = GEN_PROBATION;
		event_add(s->upgrade_ev, &probation);
	}
}

static void
link_read_cb(struct bufferevent *bev, void *arg)
{
	struct gen *g = arg;
	struct sup *s = g->s;
	char *line;

	while ((line = evbuffer_readln(bufferevent_get_input(bev), NULL,
	            EVBUFFER_EOL_LF)) != NULL) {
		if (strcmp(line, "READY") == 0 && !g->ready)
			gen_ready(s, g);
		else if (strcmp(line, "UPGRADE") == 0)
			upgrade_begin(s, g, "admin");
		else if (strcmp(line, "CLOSED") == 0 && g == s->closing)
			upgrade_done(s);
		else if (strcmp(line, "DRAINING") == 0 && !g->draining) {
			g->draining = 1;
			/* The current one, or the next one on probation,
			 * drains on its own (POST /admin/drain reached it on
			 * the shared admin socket): the service is ending. */
			if (g->role != GEN_OLD && !s->stopping)
				stop_all(s, SIGTERM, "admin", g);
		}
		free(line);
	}
}

static void
link_close(struct gen *g)
{
	if (g->link != NULL)
		bufferevent_free(g->link);
	g->link = NULL;
	if (g->s->asker == g)
		g->s->asker = NULL;
}

static void
link_event_cb(struct bufferevent *bev, short what, void *arg)
{
	(void)bev;
	/* EOF or an error: its exit (SIGCHLD) tells the rest. */
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
		link_close(arg);
}

static int
spawn_gen(struct sup *s, unsigned n, enum role role)
{
	struct gen *g = calloc(1, sizeof(*g));
	int sv[2] = { -1, -1 };

	if (g == NULL ||
	    socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		goto fail;
	g->s = s;
	g->n = n;
	g->role = role;
	g->since = now_ms();
	g->link = bufferevent_socket_new(s->base, sv[0], BEV_OPT_CLOSE_ON_FREE);
	if (g->link == NULL)
		goto fail;
	sv[0] = -1;
	evutil_make_socket_nonblocking(bufferevent_getfd(g->link));
	g->pid = spawn(s, g, sv[1]);
	if (g->pid < 0)
		goto fail;
	close(sv[1]);
	bufferevent_setcb(g->link, link_read_cb, NULL, link_event_cb, g);
	bufferevent_enable(g->link, EV_READ);
	g->next = s->gens;
	s->gens = g;
	if (role == GEN_CURRENT)
		s->current = g;
	else
		s->next = g;
	return 0;
fail:
	if (g != NULL && g->link != NULL)
		bufferevent_free(g->link);
	for (int i = 0; i < 2; i++)
		if (sv[i] >= 0)
			close(sv[i]);
	free(g);
	return -1;
}

/* "exited with status 1", "killed by signal 9"; the exit status it stands
 * for (128 + the signal, as a shell says). */
static int
describe_exit(int wstatus, char *buf, size_t len)
{
	if (WIFSIGNALED(wstatus)) {
		snprintf(buf, len, "killed by signal %d", WTERMSIG(wstatus));
		return 128 + WTERMSIG(wstatus);
	}
	snprintf(buf, len, "exited with status %d", WEXITSTATUS(wstatus));
	return WEXITSTATUS(wstatus);
}

static void
gen_exited(struct sup *s, struct gen *g, int wstatus)
{
	char how[64], why[128];
	int code = describe_exit(wstatus, how, sizeof(how));

	/* The current generation's own exits (0 after a clean drain, 1 when
	 * it cut requests off or could not start) end the service, and its
	 * last line ("stopped", "start_failed") already says so. */
	if (g != s->current || WIFSIGNALED(wstatus) || code > 1)
		log_event("generation_exit",
		    json_pack("{s:I,s:I,s:s,s:s,s:i,s:I}", "generation",
		        (json_int_t)g->n, "pid", (json_int_t)g->pid, "role",
		        role_names[g->role], "how", how, "status", code, "ms",
		        (json_int_t)(now_ms() - g->since)));
	for (struct gen **p = &s->gens; *p != NULL; p = &(*p)->next)
		if (*p == g) {
			*p = g->next;
			break;
		}
	/* An upgrade whose old generation was closing its listeners is done
	 * once either of the two exits. */
	if (s->closing != NULL && (g == s->closing || g == s->current))
		upgrade_done(s);
	link_close(g);
	if (g == s->next) {
		snprintf(why, sizeof(why), "%s%s", how,
		    g->ready ? " after it was ready" : "");
		upgrade_failed(s, why);
	}
	if (g == s->current) {
		/* Its exit status is the service's, and so is its end. */
		s->status = code;
		s->current = NULL;
		if (!s->stopping)
			stop_all(s, SIGTERM, how, NULL);
	}
	free(g);
	send_stats(s);
	if (s->gens == NULL && s->stopping) {
		notify_send("STATUS=stopped (exit %d)", s->status);
		event_base_loopbreak(s->base);
	}
}

static void
signal_cb(evutil_socket_t signo, short what, void *arg)
{
	struct sup *s = arg;
	int wstatus;
	pid_t pid;

	(void)what;
	switch (signo) {
	case SIGTERM: stop_all(s, SIGTERM, "SIGTERM", NULL); break;
	case SIGINT: stop_all(s, SIGINT, "SIGINT", NULL); break;
	case SIGQUIT: stop_all(s, SIGQUIT, "SIGQUIT", NULL); break;
	case SIGHUP:
		log_reopen();
		for (struct gen *g = s->gens; g != NULL; g = g->next)
			pass_signal(g, SIGHUP);
		break;
	case SIGUSR2: upgrade_begin(s, NULL, "SIGUSR2"); break;
	case SIGCHLD:
		while ((pid = waitpid(-1, &wstatus, WNOHANG)) > 0)
			for (struct gen *g = s->gens; g != NULL; g = g->next)
				if (g->pid == pid) {
					gen_exited(s, g, wstatus);
					break;
				}
		break;
	}
}

int
supervisor_run(const struct options *o, int argc, char **argv)
{
	static const int signals[] = { SIGTERM, SIGINT, SIGQUIT, SIGHUP,
		SIGUSR2, SIGCHLD };
	struct event *sigev[6] = { NULL };
	struct sup s;
	int rc = 1;

	(void)argc;
	memset(&s, 0, sizeof(s));
	s.o = o;
	s.argv = argv;
	s.lis.admin = -1;
	if (log_setup(o->cfg) < 0)
		fprintf(stderr, "graced: cannot open the log file\n");
	/* A generation that left its link must not kill us with SIGPIPE. */
	signal(SIGPIPE, SIG_IGN);
	s.base = event_base_new();
	s.upgrade_ev = s.base ? evtimer_new(s.base, upgrade_timer_cb, &s) :
	                        NULL;
	if (s.upgrade_ev == NULL)
		goto out;
	if (find_exe(argv[0], s.exe, sizeof(s.exe)) < 0) {
		log_event("start_failed",
		    json_pack("{s:s,s:s}", "cause",
		        "cannot find the executable to start generations from",
		        "argv0", argv[0]));
		goto out;
	}
	for (size_t i = 0; i < 6; i++) {
		sigev[i] = evsignal_new(s.base, signals[i], signal_cb, &s);
		event_add(sigev[i], NULL);
	}
	if (listeners_open(&s) < 0)
		goto out;
	if (spawn_gen(&s, 1, GEN_CURRENT) < 0) {
		log_event("start_failed",
		    json_pack("{s:s,s:s}", "cause", "cannot start a process",
		        "error", strerror(errno)));
		goto out;
	}
	event_base_dispatch(s.base);
	rc = s.status;
out:
	while (s.gens != NULL) {
		struct gen *g = s.gens;
		s.gens = g->next;
		link_close(g);
		free(g);
	}
	for (size_t i = 0; i < 6; i++)
		if (sigev[i] != NULL)
			event_free(sigev[i]);
	if (s.upgrade_ev != NULL)
		event_free(s.upgrade_ev);
	if (s.base != NULL)
		event_base_free(s.base);
	activation_close(&s.lis);
	log_close();
	return rc;
}
