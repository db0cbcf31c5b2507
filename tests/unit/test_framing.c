/* Unit tests for src/lib/framing.c: every input is read whole and again one
 * byte at a time, since the network may split it anywhere. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "framing.h"

struct result {
	enum framing_verdict v;
	unsigned bad, requests;
	char text[512]; /* the input as evhttp then reads it */
};

static struct result
scan(const char *in, size_t n, size_t step)
{
	struct result res;
	struct framing f;

	assert_true(n < sizeof(res.text));
	memcpy(res.text, in, n);
	res.text[n] = '\0';
	framing_init(&f, 256);
	res.v = FRAMING_OK;
	for (size_t i = 0; i < n; i += step)
		res.v =
		    framing_scan(&f, res.text + i, n - i < step ? n - i : step);
	res.bad = f.bad;
	res.requests = f.requests;
	return res;
}

/* The verdict on in, and the request it is about; the same split or not. */
static enum framing_verdict
verdict_on(const char *in, unsigned *bad)
{
	size_t n = strlen(in);
	struct result whole = scan(in, n, n), bytes = scan(in, n, 1);

	assert_int_equal(whole.v, bytes.v);
	assert_int_equal(whole.bad, bytes.bad);
	assert_string_equal(whole.text, bytes.text);
	if (bad != NULL)
		*bad = whole.bad;
	return whole.v;
}

static void
assert_verdict(const char *in, enum framing_verdict want)
{
	unsigned bad = 0;

	assert_int_equal(verdict_on(in, &bad), want);
	assert_int_equal(bad, want == FRAMING_OK ? 0 : 1);
}

#define GET "GET /x HTTP/1.1\r\nHost: a\r\n"

static void
test_valid_requests(void **state)
{
	(void)state;
	assert_verdict(GET "\r\n", FRAMING_OK);
	assert_verdict("GET /x HTTP/1.0\r\n\r\n", FRAMING_OK);
	assert_verdict(GET "X-A:\t v\xc3\xa9 \r\nX-B:\r\n\r\n", FRAMING_OK);
	assert_verdict("POST /x HTTP/1.1\r\nHost: a\r\nContent-Length:  3 "
	               "\r\n\r\nabc",
	    FRAMING_OK);
	assert_verdict("POST /x HTTP/1.1\r\nhost: a\r\ntransfer-encoding: "
	               "Chunked\r\n\r\n3\r\nabc\r\nA\r\n0123456789\r\n0\r\n"
	               "T: 1\r\n\r\n",
	    FRAMING_OK);
	assert_verdict("HEAD /x HTTP/1.1\r\nHost: a\r\nContent-Length: "
	               "0\r\n\r\n",
	    FRAMING_OK);
	assert_verdict("PUT /x HTTP/1.1\r\nHost: a\r\nContent-Length:\t1\r\n"
	               "\r\nz",
	    FRAMING_OK);
}

static void
test_pipelined_requests_are_counted(void **state)
{
	const char *in = GET "\r\n"
	                     "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: "
	                     "20\r\n\r\nGET /y HTTP/1.1\r\n\r\n" GET "\r\n";
	struct result res = scan(in, strlen(in), strlen(in));

	(void)state;
	/* The body that looks like a request is a body. */
	assert_int_equal(res.v, FRAMING_OK);
	assert_int_equal(res.requests, 3);
}

static void
test_chunk_extensions_are_blanked(void **state)
{
	const char *in =
	    "POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: "
	    "chunked\r\n\r\n3;a=b\r\nabc\r\n2 \t; q=\"x\"\r\nde\r\n"
	    "0;end\r\n\r\n";
	struct result res = scan(in, strlen(in), 1);

	(void)state;
	assert_int_equal(res.v, FRAMING_OK);
	/* evhttp reads "3    " as 3 and refuses "3;a=b". */
	assert_non_null(strstr(res.text, "\r\n3    \r\nabc\r\n"));
	assert_non_null(strstr(res.text, "\r\n2         \r\nde\r\n"));
	assert_non_null(strstr(res.text, "\r\n0    \r\n\r\n"));
}

static void
test_smuggling_shapes_are_refused(void **state)
{
	static const struct {
		const char *in;
		enum framing_verdict v;
	} cases[] = {
		{ "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: +7\r\n\r\n",
		    FRAMING_CONTENT_LENGTH },
		{ "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 0x7\r\n\r\n",
		    FRAMING_CONTENT_LENGTH },
		{ "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 7 7\r\n\r\n",
		    FRAMING_CONTENT_LENGTH },
		{ "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n\r\n",
		    FRAMING_CONTENT_LENGTH },
		{ "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: "
		  "12345678901234567890\r\n\r\n",
		    FRAMING_CONTENT_LENGTH },
		{ "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n"
		  "Content-Length: 1\r\n\r\n",
		    FRAMING_AMBIGUOUS_LENGTH },
		{ "POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: "
		  "chunked\r\n"
		  "Content-Length: 1\r\n\r\n",
		    FRAMING_AMBIGUOUS_LENGTH },
		{ "POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, "
		  "chunked\r\n\r\n",
		    FRAMING_TRANSFER_ENCODING },
		{ "POST /x HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
		    FRAMING_TRANSFER_ENCODING },
		{ "POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\tchunked"
		  "\r\n\r\n",
		    FRAMING_TRANSFER_ENCODING },
		{ GET "Transfer-Encoding: chunked\r\n\r\n0x7\r\n",
		    FRAMING_CHUNK },
		{ GET "Transfer-Encoding: chunked\r\n\r\n 7\r\n",
		    FRAMING_CHUNK },
		{ GET "Transfer-Encoding: chunked\r\n\r\n+7\r\n",
		    FRAMING_CHUNK },
		{ GET "Transfer-Encoding: chunked\r\n\r\n7 \r\n",
		    FRAMING_CHUNK },
		{ GET "Transfer-Encoding: chunked\r\n\r\n\r\n7\r\n",
		    FRAMING_CHUNK },
		{ GET "Transfer-Encoding: chunked\r\n\r\n1\r\naXX\r\n",
		    FRAMING_CHUNK },
		{ GET "Transfer-Encoding: chunked\r\n\r\n1000000000000000\r\n",
		    FRAMING_CHUNK },
		{ GET "X: a\r\n b\r\n\r\n", FRAMING_OBS_FOLD },
		{ GET "X: a\r\n\tb\r\n\r\n", FRAMING_OBS_FOLD },
		{ "GET /x HTTP/1.1\r\nHost : a\r\n\r\n",
		    FRAMING_SPACE_BEFORE_COLON },
		{ GET "Content-Length\t: 1\r\n\r\n",
		    FRAMING_SPACE_BEFORE_COLON },
		{ GET ": a\r\n\r\n", FRAMING_FIELD_NAME },
		{ GET "X\"y: a\r\n\r\n", FRAMING_FIELD_NAME },
		{ GET "X: a\x01\r\n\r\n", FRAMING_CONTROL_CHAR },
		{ GET "X: a\x7f\r\n\r\n", FRAMING_CONTROL_CHAR },
		{ GET "X: a\rb\r\n\r\n", FRAMING_LINE_ENDING },
		{ GET "X: a\nb\r\n\r\n", FRAMING_LINE_ENDING },
		{ GET "\n", FRAMING_LINE_ENDING },
		{ GET "Host: b\r\n\r\n", FRAMING_HOST },
		{ "GET /x HTTP/1.1\r\n\r\n", FRAMING_HOST },
		{ "GET /x HTTP/1.1\r\nX-Host: a\r\n\r\n", FRAMING_HOST },
		{ "HEAD /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n",
		    FRAMING_UNEXPECTED_BODY },
		{ "GET /x HTTP/1.1 \r\nHost: a\r\n\r\n", FRAMING_REQUEST_LINE },
		{ "GET /a b HTTP/1.1\r\nHost: a\r\n\r\n",
		    FRAMING_REQUEST_LINE },
		{ "GET  /x HTTP/1.1\r\nHost: a\r\n\r\n", FRAMING_REQUEST_LINE },
		{ "GET /x HTTP/2.0\r\nHost: a\r\n\r\n", FRAMING_REQUEST_LINE },
		{ "GET /x\r\n\r\n", FRAMING_REQUEST_LINE },
		{ "\r\nGET /x HTTP/1.1\r\nHost: a\r\n\r\n",
		    FRAMING_REQUEST_LINE },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		unsigned bad = 0;
		enum framing_verdict v = verdict_on(cases[i].in, &bad);
		if (v != cases[i].v)
			fail_msg("case %zu: %s: got %s, want %s", i,
			    cases[i].in, framing_reason(v),
			    framing_reason(cases[i].v));
		assert_int_equal(bad, 1);
		assert_int_equal(framing_status(v), 400);
	}
}

static void
test_verdict_names_the_bad_request(void **state)
{
	unsigned bad = 0;

	(void)state;
	assert_int_equal(verdict_on(GET "\r\n" GET "\r\n"
	                                "GET /x HTTP/1.1\r\nHost : a\r\n\r\n",
	                     &bad),
	    FRAMING_SPACE_BEFORE_COLON);
	assert_int_equal(bad, 3);
}

static void
test_head_size_limit(void **state)
{
	char in[400];

	(void)state;
	/* The limit (256 here) counts the request line and field lines
	 * without their CRLF, as evhttp's max_headers_size does. */
	memset(in, 0, sizeof(in));
	strcpy(in, "GET /x HTTP/1.1\r\nHost: a\r\nX: ");
	memset(in + strlen(in), 'v', 256 - (15 + 7 + 3));
	strcat(in, "\r\n\r\n");
	assert_verdict(in, FRAMING_OK);
	strcpy(strstr(in, "\r\n\r\n"), "v\r\n\r\n");
	assert_verdict(in, FRAMING_HEADER_TOO_LARGE);
	assert_int_equal(framing_status(FRAMING_HEADER_TOO_LARGE), 431);
}

/* A head of many short fields costs evhttp far more than its size. */
static void
test_field_count_limit(void **state)
{
	char head[1024];

	(void)state;
	for (int extra = 0; extra <= 1; extra++) {
		struct framing f;
		int n = snprintf(head, sizeof(head), "GET / HTTP/1.1\r\n");
		for (int i = 0; i < FRAMING_MAX_FIELDS + extra; i++)
			n += snprintf(head + n, sizeof(head) - (size_t)n,
			    i == 0 ? "Host: a\r\n" : "a:\r\n");
		n += snprintf(head + n, sizeof(head) - (size_t)n, "\r\n");
		assert_true((size_t)n < sizeof(head));
		framing_init(&f, 16384);
		assert_int_equal(framing_scan(&f, head, (size_t)n),
		    extra ? FRAMING_TOO_MANY_FIELDS : FRAMING_OK);
		assert_int_equal(f.bad, extra ? 1 : 0);
	}
}

static void
test_verdict_stays(void **state)
{
	struct framing f;
	char bad[] = "GET /x HTTP/1.1\r\nHost : a\r\n\r\n";
	char good[] = GET "\r\n";

	(void)state;
	framing_init(&f, 1024);
	assert_int_equal(
	    framing_scan(&f, bad, strlen(bad)), FRAMING_SPACE_BEFORE_COLON);
	assert_int_equal(
	    framing_scan(&f, good, strlen(good)), FRAMING_SPACE_BEFORE_COLON);
	assert_int_equal(f.bad, 1);
	assert_string_equal(
	    framing_reason(FRAMING_SPACE_BEFORE_COLON), "space_before_colon");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_valid_requests),
		cmocka_unit_test(test_pipelined_requests_are_counted),
		cmocka_unit_test(test_chunk_extensions_are_blanked),
		cmocka_unit_test(test_smuggling_shapes_are_refused),
		cmocka_unit_test(test_verdict_names_the_bad_request),
		cmocka_unit_test(test_head_size_limit),
		cmocka_unit_test(test_field_count_limit),
		cmocka_unit_test(test_verdict_stays),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
