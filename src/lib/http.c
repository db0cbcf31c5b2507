/* What every listener's replies share: the one JSON reply, request ids,
 * the Date cache, Connection: close and the method names. It knows evhttp
 * requests only, never a graced_request, so both the public listener
 * (request.c) and the admin listener use it. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/random.h>

#include <event2/buffer.h>
#include <event2/http.h>

#include "http.h"

const char *
http_method_name(enum evhttp_cmd_type cmd)
{
	switch (cmd) {
	case EVHTTP_REQ_GET: return "GET";
	case EVHTTP_REQ_POST: return "POST";
	case EVHTTP_REQ_HEAD: return "HEAD";
	case EVHTTP_REQ_PUT: return "PUT";
	case EVHTTP_REQ_DELETE: return "DELETE";
	case EVHTTP_REQ_OPTIONS: return "OPTIONS";
	case EVHTTP_REQ_TRACE: return "TRACE";
	case EVHTTP_REQ_CONNECT: return "CONNECT";
	case EVHTTP_REQ_PATCH: return "PATCH";
	}
	return "OTHER";
}

/* The Date header, formatted once a second per thread instead of once a
 * response (libevent formats it for every reply that lacks one). */
static const char *
cached_date(void)
{
	static __thread char buf[40];
	static __thread time_t formatted = -1;
	time_t now = time(NULL);
	struct tm tm;

	if (now != formatted) {
		gmtime_r(&now, &tm);
		strftime(buf, sizeof(buf), "%a, %d %b %Y %H:%M:%S GMT", &tm);
		formatted = now;
	}
	return buf;
}

void
http_send(struct evhttp_request *req, int status)
{
	struct evkeyvalq *headers = evhttp_request_get_output_headers(req);

	if (evhttp_find_header(headers, "Date") == NULL)
		evhttp_add_header(headers, "Date", cached_date());
	/* libevent 2.1 writes the output buffer even for HEAD, and leaves out
	 * its length: say the length, send no body. */
	if (evhttp_request_get_command(req) == EVHTTP_REQ_HEAD) {
		struct evbuffer *out = evhttp_request_get_output_buffer(req);
		char len[32];
		snprintf(len, sizeof(len), "%zu", evbuffer_get_length(out));
		evhttp_remove_header(
		    evhttp_request_get_output_headers(req), "Content-Length");
		evhttp_add_header(evhttp_request_get_output_headers(req),
		    "Content-Length", len);
		evbuffer_drain(out, evbuffer_get_length(out));
	}
	evhttp_send_reply(req, status, NULL, NULL);
}

static char id_prefix[13];  /* random, set once per process */
static uint64_t id_counter; /* atomic */
static pthread_once_t id_once = PTHREAD_ONCE_INIT;

static void
id_init(void)
{
	static const char hex[] = "0123456789abcdef";
	unsigned char r[6] = { 0 };
	uint64_t t = (uint64_t)time(NULL) ^ (uint64_t)getpid() << 32;

	/* Without getrandom (old kernels, seccomp) the time and pid do. */
	if (getrandom(r, sizeof(r), GRND_NONBLOCK) != (ssize_t)sizeof(r))
		memcpy(r, &t, sizeof(r));
	for (size_t i = 0; i < sizeof(r); i++) {
		id_prefix[2 * i] = hex[r[i] >> 4];
		id_prefix[2 * i + 1] = hex[r[i] & 15];
	}
}

size_t
http_new_id(char *buf)
{
	static const char hex[] = "0123456789abcdef";
	uint64_t n = __atomic_add_fetch(&id_counter, 1, __ATOMIC_RELAXED);
	char digits[16];
	size_t k = 0;

	pthread_once(&id_once, id_init);
	memcpy(buf, id_prefix, 12);
	buf[12] = '-';
	do {
		digits[sizeof(digits) - 1 - k++] = hex[n & 15];
		n >>= 4;
	} while (n > 0);
	memcpy(buf + 13, digits + sizeof(digits) - k, k);
	buf[13 + k] = '\0';
	return 13 + k;
}

static int
id_is_acceptable(const char *id)
{
	size_t i;

	for (i = 0; id[i] != '\0'; i++)
		if (id[i] < 0x20 || id[i] > 0x7e || i == HTTP_ID_MAX)
			return 0;
	return i > 0;
}

void
http_set_id(struct evhttp_request *req)
{
	const char *id = evhttp_find_header(
	    evhttp_request_get_input_headers(req), "X-Request-Id");
	char fresh[32];

	if (id == NULL || !id_is_acceptable(id)) {
		http_new_id(fresh);
		id = fresh;
	}
	evhttp_add_header(
	    evhttp_request_get_output_headers(req), "X-Request-Id", id);
}

void
http_set_close(struct evhttp_request *req)
{
	struct evkeyvalq *out = evhttp_request_get_output_headers(req);

	/* An HTTP/1.0 keep-alive request would otherwise get both
	 * "keep-alive" and "close". */
	evhttp_remove_header(
	    evhttp_request_get_input_headers(req), "Connection");
	if (evhttp_find_header(out, "Connection") == NULL)
		evhttp_add_header(out, "Connection", "close");
}

int
http_reply_json(struct evhttp_request *req, int status, json_t *body)
{
	static const char oom[] =
	    "{\"error\":\"out of memory\",\"status\":500}";
	char *text = body ? json_dumps(body, JSON_COMPACT | JSON_ENCODE_ANY) :
	                    NULL;
	struct evbuffer *out = evhttp_request_get_output_buffer(req);

	json_decref(body);
	evhttp_add_header(evhttp_request_get_output_headers(req),
	    "Content-Type", "application/json");
	if (text == NULL) {
		status = 500;
		evbuffer_add(out, oom, sizeof(oom) - 1);
	} else if (evbuffer_add(out, text, strlen(text)) < 0) {
		status = 500;
	}
	free(text);
	http_send(req, status);
	return 0;
}

int
http_reply_error(struct evhttp_request *req, int status, const char *message)
{
	return http_reply_json(req, status,
	    json_pack("{s:s,s:i}", "error", message, "status", status));
}
