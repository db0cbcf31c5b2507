/* A strict reader of HTTP/1.1 request framing (RFC 9112). It sees every
 * byte of a connection before evhttp 2.1 does and only decides where each
 * request ends and whether the head was written as the RFC asks; evhttp
 * still parses everything. evhttp is lenient where a front proxy may not
 * be (signs and "0x" in lengths, folded lines, "Name :"), which is how
 * requests are smuggled, so any doubt here refuses the request. */
#include <string.h>
#include <strings.h>

#include "framing.h"

enum {
	S_START,       /* the first byte of a request */
	S_METHOD,      /* request line: the method */
	S_TARGET,      /* ... the request target */
	S_VERSION,     /* ... the version */
	S_FIELD_START, /* the first byte of a field line, or the blank line */
	S_NAME,        /* a field name */
	S_VALUE,       /* a field value */
	S_LF,          /* the LF of a CRLF; then after_lf */
	S_HEAD_END,    /* (after_lf only) the blank line ended the head */
	S_BODY,        /* left bytes of a Content-Length body */
	S_CHUNK_SIZE,  /* hex digits of a chunk size */
	S_CHUNK_BWS,   /* blanks between the size and ";" */
	S_CHUNK_EXT,   /* a chunk extension, up to CR */
	S_CHUNK_DATA,  /* left bytes of chunk data */
	S_CHUNK_CR,    /* the CRLF after chunk data */
	S_DEAD,        /* a rule was broken: nothing more is read */
};

/* What the current message said so far (framing.flags). */
enum {
	F_HTTP10 = 1 << 0,  /* HTTP/1.0: Host not required */
	F_NOBODY = 1 << 1,  /* HEAD or TRACE: evhttp reads no body */
	F_HOST = 1 << 2,    /* a Host field was seen */
	F_LENGTH = 1 << 3,  /* a Content-Length field was seen */
	F_CHUNKED = 1 << 4, /* a Transfer-Encoding field was seen */
	F_TRAILER = 1 << 5, /* reading the trailer section */
};

enum { FIELD_OTHER, FIELD_HOST, FIELD_LENGTH, FIELD_TE };

static const struct {
	const char *reason; /* metrics label */
	int status;
	const char *message;
} verdicts[FRAMING_NVERDICTS] = {
	[FRAMING_OK] = { "ok", 200, "" },
	[FRAMING_HEADER_TOO_LARGE] = { "header_too_large", 431,
	    "request header fields too large" },
	[FRAMING_REQUEST_LINE] = { "request_line", 400, "bad request line" },
	[FRAMING_LINE_ENDING] = { "line_ending", 400,
	    "line not ended by CRLF" },
	[FRAMING_FIELD_NAME] = { "field_name", 400, "bad header name" },
	[FRAMING_SPACE_BEFORE_COLON] = { "space_before_colon", 400,
	    "whitespace before a header's colon" },
	[FRAMING_OBS_FOLD] = { "obs_fold", 400,
	    "folded header line (obs-fold)" },
	[FRAMING_CONTROL_CHAR] = { "control_char", 400,
	    "control character in a header" },
	[FRAMING_HOST] = { "host", 400, "HTTP/1.1 needs exactly one Host" },
	[FRAMING_CONTENT_LENGTH] = { "content_length", 400,
	    "Content-Length is not digits only" },
	[FRAMING_AMBIGUOUS_LENGTH] = { "ambiguous_length", 400,
	    "ambiguous message length" },
	[FRAMING_TRANSFER_ENCODING] = { "transfer_encoding", 400,
	    "unsupported Transfer-Encoding" },
	[FRAMING_UNEXPECTED_BODY] = { "unexpected_body", 400,
	    "body on a request that has none" },
	[FRAMING_CHUNK] = { "chunk", 400, "bad chunk size or framing" },
	[FRAMING_TOO_MANY_FIELDS] = { "too_many_fields", 431,
	    "too many header fields" },
};

void
framing_init(struct framing *f, size_t max_head)
{
	memset(f, 0, sizeof(*f));
	f->max_head = max_head;
}

const char *
framing_reason(enum framing_verdict v)
{
	return verdicts[v].reason;
}

int
framing_status(enum framing_verdict v)
{
	return verdicts[v].status;
}

const char *
framing_message(enum framing_verdict v)
{
	return verdicts[v].message;
}

/* Byte classes, one bit each: C_TOKEN for RFC 9110 tchar (letters,
 * digits, !#$%&'*+-.^_`|~: methods and field names), C_VALUE for field
 * value bytes (VCHAR, SP, HTAB, obs-text; no other CTL, no DEL), C_TARGET
 * for request-target bytes (no CTL, SP or DEL). A table, because these
 * loops are the hot path. */
enum { C_TOKEN = 1, C_VALUE = 2, C_TARGET = 4 };
static const uint8_t classes[256] = {
	0,
	0,
	0,
	0,
	0,
	0,
	0,
	0,
	0,
	2,
	0,
	0,
	0,
	0,
	0,
	0,
	0,
	0,
	0,
	0,
	0,
	0,
	0,
	0,
	0,
	0,
	0,
	0,
	0,
	0,
	0,
	0,
	2,
	7,
	6,
	7,
	7,
	7,
	7,
	7,
	6,
	6,
	7,
	7,
	6,
	7,
	7,
	6,
	7,
	7,
	7,
	7,
	7,
	7,
	7,
	7,
	7,
	7,
	6,
	6,
	6,
	6,
	6,
	6,
	6,
	7,
	7,
	7,
	7,
	7,
	7,
	7,
	7,
	7,
	7,
	7,
	7,
	7,
	7,
	7,
	7,
	7,
	7,
	7,
	7,
	7,
	7,
	7,
	7,
	7,
	7,
	6,
	6,
	6,
	7,
	7,
	7,
	7,
	7,
	7,
	7,
	7,
	7,
	7,
	7,
	7,
	7,
	7,
	7,
	7,
	7,
	7,
	7,
	7,
	7,
	7,
	7,
	7,
	7,
	7,
	7,
	7,
	7,
	6,
	7,
	6,
	7,
	0,
	6,
	6,
	6,
	6,
	6,
	6,
	6,
	6,
	6,
	6,
	6,
	6,
	6,
	6,
	6,
	6,
	6,
	6,
	6,
	6,
	6,
	6,
	6,
	6,
	6,
	6,
	6,
	6,
	6,
	6,
	6,
	6,
	6,
	6,
	6,
	6,
	6,
	6,
	6,
	6,
	6,
	6,
	6,
	6,
	6,
	6,
	6,
	6,
	6,
	6,
	6,
	6,
	6,
	6,
	6,
	6,
	6,
	6,
	6,
	6,
	6,
	6,
	6,
	6,
	6,
	6,
	6,
	6,
	6,
	6,
	6,
	6,
	6,
	6,
	6,
	6,
	6,
	6,
	6,
	6,
	6,
	6,
	6,
	6,
	6,
	6,
	6,
	6,
	6,
	6,
	6,
	6,
	6,
	6,
	6,
	6,
	6,
	6,
	6,
	6,
	6,
	6,
	6,
	6,
	6,
	6,
	6,
	6,
	6,
	6,
	6,
	6,
	6,
	6,
	6,
	6,
	6,
	6,
	6,
	6,
	6,
	6,
	6,
	6,
	6,
	6,
	6,
	6,
};

static int
is_tchar(unsigned char c)
{
	return classes[c] & C_TOKEN;
}

static int
is_value(unsigned char c)
{
	return classes[c] & C_VALUE;
}

static int
hex_value(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f')
		return (c | 0x20) - 'a' + 10;
	return -1;
}

static enum framing_verdict
fail(struct framing *f, enum framing_verdict v)
{
	f->verdict = (uint8_t)v;
	f->bad = f->requests;
	f->state = S_DEAD;
	return v;
}

/* Counts k bytes of the head (evhttp's max_headers_size counts the same:
 * the request line and field lines without their CRLF). */
static int
head_over(struct framing *f, size_t k)
{
	f->head_bytes += k;
	return f->head_bytes > f->max_head;
}

/* The word (a field name or value) is exactly s, ignoring case. */
static int
word_is(const struct framing *f, const char *s)
{
	return f->len == strlen(s) && strncasecmp(f->word, s, f->len) == 0;
}

static enum framing_verdict
name_done(struct framing *f)
{
	f->field = FIELD_OTHER;
	if (word_is(f, "host")) {
		if (f->flags & F_HOST)
			return fail(f, FRAMING_HOST);
		f->flags |= F_HOST;
		f->field = FIELD_HOST;
	} else if (word_is(f, "content-length")) {
		if (f->flags & (F_LENGTH | F_CHUNKED))
			return fail(f, FRAMING_AMBIGUOUS_LENGTH);
		f->flags |= F_LENGTH;
		f->field = FIELD_LENGTH;
	} else if (word_is(f, "transfer-encoding")) {
		if (f->flags & F_LENGTH)
			return fail(f, FRAMING_AMBIGUOUS_LENGTH);
		/* Twice, or on HTTP/1.0 (RFC 9112 6.1: faulty framing). */
		if (f->flags & (F_CHUNKED | F_HTTP10))
			return fail(f, FRAMING_TRANSFER_ENCODING);
		f->flags |= F_CHUNKED;
		f->field = FIELD_TE;
	}
	f->len = 0;
	f->state = S_VALUE;
	return FRAMING_OK;
}

static enum framing_verdict
value_done(struct framing *f)
{
	while (f->len > 0 && f->len <= sizeof(f->word) &&
	    (f->word[f->len - 1] == ' ' || f->word[f->len - 1] == '\t'))
		f->len--;
	if (f->field == FIELD_LENGTH) {
		/* 19 digits always fit in 64 bits. */
		if (f->len == 0 || f->len > 19)
			return fail(f, FRAMING_CONTENT_LENGTH);
		f->left = 0;
		for (unsigned i = 0; i < f->len; i++) {
			if (f->word[i] < '0' || f->word[i] > '9')
				return fail(f, FRAMING_CONTENT_LENGTH);
			f->left = f->left * 10 + (uint64_t)(f->word[i] - '0');
		}
	} else if (f->field == FIELD_TE && !word_is(f, "chunked")) {
		return fail(f, FRAMING_TRANSFER_ENCODING);
	}
	f->state = S_LF;
	f->after_lf = S_FIELD_START;
	return FRAMING_OK;
}

/* The blank line after the fields (or the trailer) was read. */
static enum framing_verdict
head_done(struct framing *f)
{
	int body = (f->flags & F_CHUNKED) ||
	    ((f->flags & F_LENGTH) && f->left > 0);

	f->state = S_START;
	if (f->flags & F_TRAILER)
		return FRAMING_OK;
	if (!(f->flags & (F_HTTP10 | F_HOST)))
		return fail(f, FRAMING_HOST);
	/* evhttp reads no body for these: the body would be read as the next
	 * request. */
	if (body && (f->flags & F_NOBODY))
		return fail(f, FRAMING_UNEXPECTED_BODY);
	if (f->flags & F_CHUNKED) {
		f->state = S_CHUNK_SIZE;
		f->left = 0;
		f->len = 0;
	} else if (body) {
		f->state = S_BODY;
	}
	return FRAMING_OK;
}

static void
chunk_size_done(struct framing *f)
{
	f->state = S_LF;
	f->after_lf = f->left > 0 ? S_CHUNK_DATA : S_FIELD_START;
	if (f->left == 0)
		f->flags |= F_TRAILER;
}

static enum framing_verdict
request_line_byte(struct framing *f, unsigned char c)
{
	switch (f->state) {
	case S_METHOD:
		if (c == ' ' && f->len > 0) {
			if ((f->len == 4 && f->word[0] == 'H') ||
			    (f->len == 5 && f->word[0] == 'T'))
				f->flags |= F_NOBODY;
			f->len = 0;
			f->state = S_TARGET;
			return FRAMING_OK;
		}
		/* Method bytes were passed over by skip_plain. */
		return fail(f, FRAMING_REQUEST_LINE);
	case S_TARGET:
		if (c == ' ' && f->len > 0) {
			f->len = 0;
			f->state = S_VERSION;
			return FRAMING_OK;
		}
		if (c <= ' ' || c == 0x7f)
			return fail(f, FRAMING_REQUEST_LINE);
		f->len = 1;
		return FRAMING_OK;
	default: /* S_VERSION */
		if (c == '\r') {
			if (f->len != 8 || memcmp(f->word, "HTTP/1.", 7) != 0 ||
			    (f->word[7] != '0' && f->word[7] != '1'))
				return fail(f, FRAMING_REQUEST_LINE);
			if (f->word[7] == '0')
				f->flags |= F_HTTP10;
			f->state = S_LF;
			f->after_lf = S_FIELD_START;
			return FRAMING_OK;
		}
		if (f->len >= 8 || c <= ' ' || c == 0x7f)
			return fail(f, FRAMING_REQUEST_LINE);
		f->word[f->len++] = (char)c;
		return FRAMING_OK;
	}
}

static enum framing_verdict
field_byte(struct framing *f, unsigned char c)
{
	switch (f->state) {
	case S_FIELD_START:
		if (c == '\r') {
			f->state = S_LF;
			f->after_lf = S_HEAD_END;
			return FRAMING_OK;
		}
		if (c == ' ' || c == '\t')
			return fail(f, FRAMING_OBS_FOLD);
		if (c == '\n')
			return fail(f, FRAMING_LINE_ENDING);
		if (!is_tchar(c))
			return fail(f, FRAMING_FIELD_NAME);
		f->len = 0;
		f->state = S_NAME;
		/* fall through */
	case S_NAME:
		if (c == ':')
			return name_done(f);
		if (c == ' ' || c == '\t')
			return fail(f, FRAMING_SPACE_BEFORE_COLON);
		if (!is_tchar(c))
			return fail(f, FRAMING_FIELD_NAME);
		/* Names longer than the word are none we look for. */
		if (f->len < sizeof(f->word))
			f->word[f->len] = (char)c;
		if (f->len < 255)
			f->len++;
		return FRAMING_OK;
	default: /* S_VALUE of Content-Length or Transfer-Encoding */
		if (c == '\r')
			return value_done(f);
		if (c == '\n')
			return fail(f, FRAMING_LINE_ENDING);
		if (!is_value(c))
			return fail(f, FRAMING_CONTROL_CHAR);
		/* evhttp trims only spaces before a value, and then reads
		 * "\tchunked" as not chunked (strtoll skips a tab itself). */
		if (f->len == 0 &&
		    (c == ' ' || (c == '\t' && f->field == FIELD_LENGTH)))
			return FRAMING_OK;
		if (f->len < sizeof(f->word))
			f->word[f->len] = (char)c;
		if (f->len < 255)
			f->len++;
		return FRAMING_OK;
	}
}

static enum framing_verdict
chunk_byte(struct framing *f, char *p)
{
	unsigned char c = (unsigned char)*p;
	int h;

	switch (f->state) {
	case S_CHUNK_SIZE:
		h = hex_value(c);
		if (h >= 0) {
			/* 15 hex digits always fit in 64 bits. */
			if (f->len >= 15)
				return fail(f, FRAMING_CHUNK);
			f->left = f->left * 16 + (uint64_t)h;
			f->len++;
			return FRAMING_OK;
		}
		if (f->len == 0)
			return fail(f, FRAMING_CHUNK);
		if (c == '\r') {
			chunk_size_done(f);
			return FRAMING_OK;
		}
		if (c != ' ' && c != '\t' && c != ';')
			return fail(f, FRAMING_CHUNK);
		f->state = c == ';' ? S_CHUNK_EXT : S_CHUNK_BWS;
		*p = ' ';
		return FRAMING_OK;
	case S_CHUNK_BWS:
		if (c != ' ' && c != '\t' && c != ';')
			return fail(f, FRAMING_CHUNK);
		if (c == ';')
			f->state = S_CHUNK_EXT;
		*p = ' ';
		return FRAMING_OK;
	case S_CHUNK_EXT:
		if (c == '\r') {
			chunk_size_done(f);
			return FRAMING_OK;
		}
		if (!is_value(c))
			return fail(f,
			    c == '\n' ? FRAMING_LINE_ENDING :
			                FRAMING_CONTROL_CHAR);
		/* Extensions count against the head's limit: evhttp reads the
		 * size line whole, however long. */
		if (head_over(f, 1))
			return fail(f, FRAMING_HEADER_TOO_LARGE);
		*p = ' ';
		return FRAMING_OK;
	default: /* S_CHUNK_CR: the CRLF after chunk data */
		if (c != '\r')
			return fail(f, FRAMING_CHUNK);
		f->state = S_LF;
		f->after_lf = S_CHUNK_SIZE;
		return FRAMING_OK;
	}
}

/* Passes over up to end - p bytes of body or chunk data. */
static size_t
skip_data(struct framing *f, const char *p, const char *end)
{
	size_t k = (size_t)(end - p);

	if (k > f->left)
		k = (size_t)f->left;
	f->left -= k;
	if (f->left == 0)
		f->state = f->state == S_BODY ? S_START : S_CHUNK_CR;
	return k;
}

/* Passes over the plain bytes of a method, target, name or value at once
 * (keeping the start of a method or name in word): they are the bulk of a
 * request head, and the hot path. */
static size_t
skip_plain(struct framing *f, const char *p, const char *end)
{
	const char *q = p;

	switch (f->state) {
	case S_TARGET:
		while (q < end && (classes[(unsigned char)*q] & C_TARGET))
			q++;
		if (q > p)
			f->len = 1;
		break;
	case S_VALUE:
		while (q < end && is_value((unsigned char)*q))
			q++;
		break;
	default: /* S_METHOD, S_NAME */
		for (; q < end && is_tchar((unsigned char)*q); q++) {
			if (f->len < sizeof(f->word))
				f->word[f->len] = *q;
			if (f->len < 255)
				f->len++;
		}
	}
	return (size_t)(q - p);
}

/* The byte after a CR. */
static enum framing_verdict
line_feed(struct framing *f, unsigned char c)
{
	if (c != '\n')
		return fail(f, FRAMING_LINE_ENDING);
	if (f->after_lf == S_HEAD_END)
		return head_done(f);
	f->state = f->after_lf;
	if (f->state == S_CHUNK_SIZE) {
		f->left = 0;
		f->len = 0;
	}
	return FRAMING_OK;
}

enum framing_verdict
framing_scan(struct framing *f, char *p, size_t n)
{
	char *end = p + n;
	enum framing_verdict v = (enum framing_verdict)f->verdict;

	while (p < end && v == FRAMING_OK) {
		unsigned char c = (unsigned char)*p;
		size_t k;

		switch (f->state) {
		case S_START:
			f->requests++;
			f->flags = 0;
			f->head_bytes = 0;
			f->fields = 0;
			f->len = 0;
			f->state = S_METHOD;
			continue;
		case S_METHOD:
		case S_TARGET:
		case S_NAME:
		case S_VALUE:
			if (f->state != S_VALUE || f->field == FIELD_OTHER ||
			    f->field == FIELD_HOST) {
				k = skip_plain(f, p, end);
				if (k > 0) {
					if (head_over(f, k))
						v = fail(f,
						    FRAMING_HEADER_TOO_LARGE);
					p += k;
					continue;
				}
			}
			/* The byte that ended the run: */
			/* fall through */
		case S_VERSION:
			/* The version whole, most often. */
			if (f->len == 0 && end - p >= 10 &&
			    (memcmp(p, "HTTP/1.1\r\n", 10) == 0 ||
			        memcmp(p, "HTTP/1.0\r\n", 10) == 0)) {
				if (p[7] == '0')
					f->flags |= F_HTTP10;
				if (head_over(f, 8))
					v = fail(f, FRAMING_HEADER_TOO_LARGE);
				f->state = S_FIELD_START;
				p += 10;
				continue;
			}
			/* fall through */
		case S_FIELD_START:
			if (c != '\r' && head_over(f, 1))
				v = fail(f, FRAMING_HEADER_TOO_LARGE);
			else if (f->state == S_FIELD_START && c != '\r' &&
			    ++f->fields > FRAMING_MAX_FIELDS)
				v = fail(f, FRAMING_TOO_MANY_FIELDS);
			else if (f->state <= S_VERSION)
				v = request_line_byte(f, c);
			else
				v = field_byte(f, c);
			break;
		case S_LF: v = line_feed(f, c); break;
		case S_BODY:
		case S_CHUNK_DATA: p += skip_data(f, p, end); continue;
		case S_DEAD: return v;
		default: v = chunk_byte(f, p); break;
		}
		p++;
		/* A CRLF whole, most often. */
		if (f->state == S_LF && p < end && v == FRAMING_OK)
			v = line_feed(f, (unsigned char)*p++);
	}
	return v;
}
