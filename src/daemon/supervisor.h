/* The supervisor: the process systemd or Docker started. It binds (or is
 * passed) the listeners, never accepts on them, and runs the service as
 * generations, each a child process started from the executable path with
 * the same arguments and environment. An upgrade (SIGUSR2, or POST
 * /admin/upgrade through the current generation) starts the next one; the
 * old one hands over once the new one is ready, or the upgrade is rolled
 * back. Its PID, signals and exit status are the service's. */
#ifndef GRACED_SUPERVISOR_H
#define GRACED_SUPERVISOR_H

#include "options.h"

/* The variables a generation is started with, beside LISTEN_FDS,
 * LISTEN_PID, LISTEN_FDNAMES and GRACED_LISTENERS_OWNED. */
#define SUPERVISOR_CONTROL_ENV "GRACED_CONTROL_FD" /* its control link */
#define SUPERVISOR_GENERATION_ENV "GRACED_GENERATION"

/* After a new generation is ready, both serve for this long before the old
 * one hands over: a new generation that dies within it is rolled back with
 * the old one still serving. */
#define SUPERVISOR_PROBATION_MS 1000
/* How long the old generation may take to say its listeners are closed
 * before the upgrade is reported done anyway. */
#define SUPERVISOR_CLOSE_MS 2000

/* Runs the service; argv is the whole command line (argv[0] included), to
 * start each generation with. Returns the exit status. */
int supervisor_run(const struct options *o, int argc, char **argv);

#endif
