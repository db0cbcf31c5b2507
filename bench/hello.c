/* The reference plain evhttp server for bench/run.py: libevent's defaults
 * (event_base_new, no flags, no timeouts), one generic callback that answers
 * every request 200 with the body graced's /healthz gives.
 *
 *   cc -O2 -o hello hello.c $(pkg-config --cflags --libs libevent)
 *   ./hello PORT            (listens on 127.0.0.1:PORT; 0 picks one)
 *
 * It prints "listening PORT" on stdout once bound. SIGTERM or SIGINT stops
 * it at once (no drain: it is a throughput reference only). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

static const char body[] =
    "{\"status\":\"ok\",\"state\":\"serving\",\"connections\":1,"
    "\"in_flight\":1}";

static void
hello(struct evhttp_request *req, void *arg)
{
	struct evbuffer *out = evhttp_request_get_output_buffer(req);

	(void)arg;
	evhttp_add_header(evhttp_request_get_output_headers(req),
	    "Content-Type", "application/json");
	evbuffer_add_reference(out, body, sizeof(body) - 1, NULL, NULL);
	evhttp_send_reply(req, 200, "OK", NULL);
}

static void
on_signal(evutil_socket_t sig, short what, void *arg)
{
	(void)sig;
	(void)what;
	event_base_loopexit(arg, NULL);
}

int
main(int argc, char **argv)
{
	struct event_base *base;
	struct evhttp *http;
	struct evhttp_bound_socket *bound;
	struct event *term, *intr;
	struct sockaddr_storage ss;
	ev_socklen_t len = sizeof(ss);
	int port;

	if (argc != 2) {
		fprintf(stderr, "usage: %s PORT\n", argv[0]);
		return 2;
	}
	port = atoi(argv[1]);
	signal(SIGPIPE, SIG_IGN);
	base = event_base_new();
	http = base ? evhttp_new(base) : NULL;
	if (http == NULL) {
		fprintf(stderr, "hello: cannot create the event base\n");
		return 1;
	}
	evhttp_set_gencb(http, hello, NULL);
	bound = evhttp_bind_socket_with_handle(http, "127.0.0.1", port);
	if (bound == NULL) {
		fprintf(stderr, "hello: cannot listen on 127.0.0.1:%d\n", port);
		return 1;
	}
	if (getsockname(evhttp_bound_socket_get_fd(bound),
	        (struct sockaddr *)&ss, &len) == 0)
		port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
	term = evsignal_new(base, SIGTERM, on_signal, base);
	intr = evsignal_new(base, SIGINT, on_signal, base);
	event_add(term, NULL);
	event_add(intr, NULL);
	printf("listening %d\n", port);
	fflush(stdout);
	event_base_dispatch(base);
	event_free(term);
	event_free(intr);
	evhttp_free(http);
	event_base_free(base);
	return 0;
}
