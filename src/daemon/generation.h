/* A generation's side of the supervisor's control link (supervisor.h):
 * READY once serving, DRAINING when its own drain begins, UPGRADE for POST
 * /admin/upgrade; and from the supervisor STOP (hand over), the answer to
 * UPGRADE, and the counts /healthz and /metrics show ("generation",
 * graced_upgrades_total, graced_generations_draining). Without a
 * supervisor (--supervisor off) it is generation 1 and cannot upgrade. */
#ifndef GRACED_GENERATION_H
#define GRACED_GENERATION_H

struct graced_server;
struct generation;

/* Takes the link named by the environment (and unsets the variables, so
 * that nothing this process starts inherits them) and adds the hooks to
 * srv, before graced_server_start. NULL without memory. */
struct generation *generation_new(struct graced_server *srv);
/* Tells the supervisor this generation serves (after the start). */
void generation_ready(struct generation *g);
/* SIGUSR2 reached this process: an upgrade is the supervisor's to start. */
void generation_usr2(struct generation *g);
void generation_free(struct generation *g);

#endif
