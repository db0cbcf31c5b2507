/* A strict reader of HTTP/1.1 request framing (RFC 9112), fed the bytes of
 * one connection as they arrive, before evhttp parses them; see framing.c. */
#ifndef GRACED_FRAMING_H
#define GRACED_FRAMING_H

#include <stddef.h>
#include <stdint.h>

/* Why a request was refused; FRAMING_OK while nothing is wrong. */
enum framing_verdict {
	FRAMING_OK,
	FRAMING_HEADER_TOO_LARGE,   /* head over --max-header-size */
	FRAMING_REQUEST_LINE,       /* not "METHOD SP target SP HTTP/1.x" */
	FRAMING_LINE_ENDING,        /* a CR or LF that is not CRLF */
	FRAMING_FIELD_NAME,         /* empty, or not a token */
	FRAMING_SPACE_BEFORE_COLON, /* "Name : value" */
	FRAMING_OBS_FOLD,           /* a field line that starts with SP/HTAB */
	FRAMING_CONTROL_CHAR,       /* NUL, another CTL or DEL in a field */
	FRAMING_HOST,               /* no Host on HTTP/1.1, or several */
	FRAMING_CONTENT_LENGTH,     /* not digits only */
	FRAMING_AMBIGUOUS_LENGTH,   /* Content-Length twice, or beside TE */
	FRAMING_TRANSFER_ENCODING,  /* not "chunked", or on HTTP/1.0 */
	FRAMING_UNEXPECTED_BODY,    /* a body on HEAD or TRACE */
	FRAMING_CHUNK,              /* chunk size not hex, no CRLF after data */
	FRAMING_TOO_MANY_FIELDS,    /* more than FRAMING_MAX_FIELDS lines */
	FRAMING_NVERDICTS
};

/* Field lines a head (or a chunked body's trailer) may have. evhttp keeps
 * about 113 bytes for each, so a head of short lines costs 50 times its
 * size without this bound (Apache's LimitRequestFields is also 100). */
#define FRAMING_MAX_FIELDS 100

/* One connection's reading position, set up by framing_init. */
struct framing {
	uint64_t left;     /* body or chunk bytes still to pass over */
	size_t head_bytes; /* request line and fields so far, CRLF excluded */
	size_t max_head;   /* --max-header-size */
	unsigned requests; /* requests begun on the connection */
	unsigned bad;      /* the request (1-based) that broke a rule */
	unsigned fields;   /* field lines of the current head so far */
	uint8_t state;     /* what the next byte is */
	uint8_t after_lf;  /* the state after the LF of a CRLF */
	uint8_t verdict;   /* enum framing_verdict of request bad */
	uint8_t field;     /* the field whose value is being read */
	uint8_t flags;     /* what the current message said so far */
	uint8_t len;       /* bytes in word */
	char word[22];     /* the start of a name, method, version or value */
};

void framing_init(struct framing *f, size_t max_head);
/* Reads the next n bytes of the connection. Chunk extensions are
 * overwritten with blanks, which evhttp 2.1 reads as the end of the chunk
 * size (it refuses ";"). Returns the verdict, which stays once not OK. */
enum framing_verdict framing_scan(struct framing *f, char *p, size_t n);
/* The metrics label, the status code and the error message of a verdict. */
const char *framing_reason(enum framing_verdict v);
int framing_status(enum framing_verdict v);
const char *framing_message(enum framing_verdict v);

#endif
