package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/common/version"
	toolkit "github.com/prometheus/exporter-toolkit/web"
	"golang.org/x/sync/errgroup"

	"github.com/promshard/promshard/web"
)

// reloadRequest asks the daemon to load its config again (SIGHUP, or POST
// /-/reload); done, when set, receives the outcome.
type reloadRequest struct{ done chan<- error }

// errReload ends serve when a reload brought a config that builds.
var errReload = errors.New("config reloaded")

// daemon serves the config, and each config a reload brings, until ctx
// ends or a part fails.
func (a *app) daemon(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	reloads := make(chan reloadRequest)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
			}
			select {
			case reloads <- reloadRequest{}:
			case <-ctx.Done():
				return
			}
		}
	}()
	for a.reloads = reloads; ; a.next.reloads, a = reloads, a.next {
		if err := a.serve(ctx); !errors.Is(err, errReload) {
			return err
		}
	}
}

// serve runs the Sharder (its HTTP server and registrar with it) until ctx
// ends (nil) or a part of it fails (its error, naming the part). It loads
// the config again on each reload request: one that builds ends serve with
// errReload, leaving the registrations in place, and daemon serves it; one
// that does not is logged and the running config stays.
func (a *app) serve(ctx context.Context) error {
	ctx, reload := context.WithCancelCause(ctx)
	done := make(chan struct{})
	defer func() { reload(nil); <-done }()
	go func() {
		defer close(done)
		for {
			var req reloadRequest
			select {
			case <-ctx.Done():
				return
			case req = <-a.reloads:
			}
			next, err := load(a.flags, a.log)
			if req.done != nil {
				req.done <- err
			}
			if err == nil {
				a.next = next
				a.registrar.Keep()
				reload(errReload)
				return
			}
			a.reloaded.Set(0)
			a.log.Error("config reload failed; the running config stays", "err", err)
		}
	}()
	var l net.Listener
	if a.cfg.Listen != "" { // bound before any work: a busy port writes nothing
		var err error
		if l, err = net.Listen("tcp", a.cfg.Listen); err != nil {
			return bindError{fmt.Errorf("http server: %w", err)}
		}
	}
	a.log.Info("prome-shard running", "version", version.Version, "jobs", len(a.cfg.Jobs), "listen", a.cfg.Listen, "self", a.flags.Member)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return a.sharder.Run(gctx, nil) }) // nil after a signal
	if l != nil {
		h := a.handler(gctx)
		g.Go(func() error {
			if err := serveOn(gctx, l, h, a.flags.WebConfig, a.log); err != nil {
				return fmt.Errorf("http server on %s: %w", a.cfg.Listen, err)
			}
			return nil
		})
	}
	err := g.Wait()
	a.log.Info("stopped")
	if context.Cause(ctx) == errReload {
		return errReload
	}
	return err
}

// handler is the HTTP surface: the web package's page and API, and the
// lifecycle endpoint, under the route prefix.
func (a *app) handler(ctx context.Context) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/", web.Handler(a.sharder, web.Options{Gatherer: a.reg, Pprof: a.cfg.Pprof, Logger: a.log}))
	mux.HandleFunc("/-/reload", func(w http.ResponseWriter, r *http.Request) {
		switch {
		case !a.flags.Lifecycle:
			http.Error(w, "the lifecycle API is off (start with --web.enable-lifecycle)", http.StatusForbidden)
		case r.Method != http.MethodPost && r.Method != http.MethodPut:
			w.Header().Set("Allow", "POST, PUT")
			http.Error(w, "use POST", http.StatusMethodNotAllowed)
		default:
			a.serveReload(ctx, w, r)
		}
	})
	prefix, _ := routePrefix(a.flags) // checked with the flags
	if prefix == "/" {
		return mux
	}
	root := http.NewServeMux()
	root.Handle(prefix+"/", http.StripPrefix(prefix, mux))
	root.Handle("GET /{$}", http.RedirectHandler(prefix+"/", http.StatusFound))
	return root
}

// serveReload loads the config again, as SIGHUP does, and answers 200 when
// it is in use, 500 with the reason when it is not.
func (a *app) serveReload(ctx context.Context, w http.ResponseWriter, r *http.Request) {
	done := make(chan error, 1)
	select {
	case a.reloads <- reloadRequest{done: done}:
	case <-ctx.Done():
		http.Error(w, "stopping", http.StatusServiceUnavailable)
		return
	case <-r.Context().Done():
		return
	}
	if err := <-done; err != nil {
		http.Error(w, "config reload failed; the running config stays: "+err.Error(), http.StatusInternalServerError)
		return
	}
	fmt.Fprintln(w, "config reloaded")
}

// checkWebConfig reads a --web.config.file and its certificates.
func checkWebConfig(path string) error {
	if err := toolkit.Validate(path); err != nil {
		return fmt.Errorf("--web.config.file %q: %w", path, err)
	}
	return nil
}

// serveOn serves h on l, with the TLS and basic auth of webConfig (an
// exporter-toolkit web config; empty: plain HTTP), until ctx ends, then
// shuts the server down, giving requests in flight up to 5 seconds. It
// returns nil after ctx ends, and the serve error otherwise.
func serveOn(ctx context.Context, l net.Listener, h http.Handler, webConfig string, logger *slog.Logger) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	noSocket := false
	flags := &toolkit.FlagConfig{WebListenAddresses: &[]string{l.Addr().String()}, WebSystemdSocket: &noSocket,
		WebConfigFile: &webConfig}
	errc := make(chan error, 1)
	go func() { errc <- toolkit.Serve(l, srv, flags, logger) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	}
}
