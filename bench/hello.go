// The Go net/http reference for bench/run.py: the same two endpoints as
// graced's bundled application and the usual graceful-shutdown recipe.
//
//	go build -o hello-go hello.go
//	GOMAXPROCS=1 ./hello-go -listen 127.0.0.1:PORT -drain-delay 0.2
//
// GET /healthz answers 200 with graced's body, 503 {"status":"draining"}
// from the moment SIGTERM (or SIGINT) arrives. POST /v1/events reads the
// body and answers 202 {"accepted":1}. On the signal it flips healthz at
// once, keeps serving for -drain-delay seconds (responses then carry
// "Connection: close", as graced's do), then calls http.Server.Shutdown and
// exits. It prints one JSON line per lifecycle step on stderr: "serving"
// (with the bound address), "drain_begin", "drain_stop" (just before
// Shutdown) and "stopped". Standard library only.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"
)

const okBody = `{"status":"ok","state":"serving","connections":1,"in_flight":1}`

var draining atomic.Bool

func logEvent(event string, extra string) {
	fmt.Fprintf(os.Stderr, "{\"ts\":%q,\"event\":%q%s}\n",
		time.Now().UTC().Format("2006-01-02T15:04:05.000Z"), event, extra)
}

func reply(w http.ResponseWriter, status int, body string) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	if draining.Load() {
		h.Set("Connection", "close")
	}
	w.WriteHeader(status)
	io.WriteString(w, body)
}

func healthz(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		reply(w, 405, `{"error":"method not allowed","status":405}`)
		return
	}
	if draining.Load() {
		reply(w, 503, `{"status":"draining"}`)
		return
	}
	reply(w, 200, okBody)
}

func events(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		reply(w, 405, `{"error":"method not allowed","status":405}`)
		return
	}
	if _, err := io.Copy(io.Discard, r.Body); err != nil {
		reply(w, 400, `{"error":"bad body","status":400}`)
		return
	}
	reply(w, 202, `{"accepted":1}`)
}

func main() {
	listen := flag.String("listen", "127.0.0.1:8080", "HOST:PORT to listen on (port 0 picks one)")
	delay := flag.Float64("drain-delay", 5, "seconds to keep serving after SIGTERM before Shutdown")
	timeout := flag.Float64("shutdown-timeout", 25, "seconds Shutdown may take before connections are cut off")
	flag.Parse()

	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", healthz)
	mux.HandleFunc("/v1/events", events)
	srv := &http.Server{Handler: mux}

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		logEvent("start_failed", fmt.Sprintf(",\"cause\":%q", err.Error()))
		os.Exit(1)
	}
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	logEvent("serving", fmt.Sprintf(",\"listen\":%q", ln.Addr().String()))

	select {
	case sig := <-sigs:
		draining.Store(true)
		logEvent("drain_begin", fmt.Sprintf(",\"cause\":%q", sig.String()))
	case err := <-served:
		logEvent("serve_failed", fmt.Sprintf(",\"cause\":%q", err.Error()))
		os.Exit(1)
	}
	start := time.Now()
	select {
	case <-time.After(time.Duration(*delay * float64(time.Second))):
	case <-sigs: // a second signal skips the rest of the delay
	}
	logEvent("drain_stop", "")
	ctx, cancel := context.WithTimeout(context.Background(),
		time.Duration(*timeout*float64(time.Second))-time.Since(start))
	defer cancel()
	status := 0
	if err := srv.Shutdown(ctx); err != nil {
		srv.Close()
		status = 1
	}
	logEvent("stopped", fmt.Sprintf(",\"drain_ms\":%d,\"exit\":%d",
		time.Since(start).Milliseconds(), status))
	os.Exit(status)
}
