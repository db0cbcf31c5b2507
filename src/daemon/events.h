/* The bundled application: POST /v1/events appends JSON events to a spool
 * file, one compact line each, exactly once. */
#ifndef GRACED_EVENTS_H
#define GRACED_EVENTS_H

#include <stddef.h>
#include <jansson.h>

struct graced_server;
struct events;

/* When a 202 is sent: after the batch's write(2), so it survives a crash of
 * the process (NONE), or also after its fdatasync, so it survives a power
 * loss (BATCH). */
enum events_sync { EVENTS_SYNC_NONE, EVENTS_SYNC_BATCH };

/* Parses a request body: a JSON object or a non-empty array of objects.
 * Returns a new array of the events, or NULL with the reason in err. */
json_t *events_parse(const char *body, size_t len, char *err, size_t errlen);
/* Opens (creating) the spool file for appending. NULL with the reason in
 * err when it cannot be written. */
struct events *events_new(const char *path, char *err, size_t errlen);
/* Sets the sync mode; before events_attach(). */
void events_set_sync(struct events *ev, enum events_sync sync);
/* Adds the route, the "spool" status and metrics, and the stop hook (flush
 * and fsync) to srv. */
int events_attach(struct events *ev, struct graced_server *srv);
/* Reopens the spool file (after a rotation). 0 or a negative errno. */
int events_reopen(struct events *ev);
void events_free(struct events *ev);

#endif
