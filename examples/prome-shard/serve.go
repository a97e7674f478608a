package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/common/version"
	toolkit "github.com/prometheus/exporter-toolkit/web"
	"golang.org/x/sync/errgroup"

	"github.com/promshard/promshard/watch"
	"github.com/promshard/promshard/web"
)

// reloadRequest asks the daemon to load its config again (SIGHUP, or POST
// /-/reload); done, when set, receives the outcome.
type reloadRequest struct{ done chan<- error }

// errReload ends serve when a reload brought a config that builds.
var errReload = errors.New("config reloaded")

// daemon serves the config, and each config a reload brings, until ctx
// ends or a part fails. The HTTP server lives across reloads (its handler
// is swapped), so that a reload never leaves the port: one that moves it to
// an address that cannot be bound is refused whole.
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
	if a.cfg.Listen != "" { // bound before any work: a busy port writes nothing
		l, err := net.Listen("tcp", a.cfg.Listen)
		if err != nil {
			return bindError{fmt.Errorf("http server: %w", err)}
		}
		a.listener = l
	}
	var srv *webServer
	defer func() { srv.stop() }()
	for a.reloads = reloads; ; {
		if a.listener != nil { // the first config, or a reload that moved the port
			srv.stop()
			srv = startWebServer(a.listener, a.flags.WebConfig, a.log)
		}
		err := a.serve(ctx, srv)
		if !errors.Is(err, errReload) {
			return err
		}
		next := a.next
		next.reloads = reloads
		next.sharder.Adopt(a.sharder)
		a.retire(ctx, next)
		a = next
	}
}

// retire ends what the running config did that the next one does not: it
// deregisters the collectors the next config no longer registers, and
// removes the files of a job that is gone or writes elsewhere now.
func (a *app) retire(ctx context.Context, next *app) {
	keep := map[string]bool{}
	for i := range next.cfg.Jobs {
		for _, m := range registered(&next.cfg.Jobs[i]) {
			keep[m.ID] = true
		}
	}
	for i := range a.cfg.Jobs {
		for _, m := range registered(&a.cfg.Jobs[i]) {
			if keep[m.ID] {
				continue
			}
			dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			if err := watch.Deregister(dctx, a.consul.Agent(), m.ID); err != nil {
				a.log.Warn("a collector no longer in collectors.register could not be deregistered", "id", m.ID, "err", err)
			} else {
				a.log.Info("deregistered a collector no longer in collectors.register", "id", m.ID)
			}
			cancel()
		}
	}
	dirs := map[string]bool{}
	for _, jc := range next.cfg.Jobs {
		if jc.Output.Dir != "" {
			dirs[canonicalDir(jc.Output.Dir)] = true
		}
	}
	for name, d := range a.dirs {
		if dirs[canonicalDir(d.dir)] {
			continue
		}
		if d.d == nil { // self mode: another copy may own the rest of the directory
			a.log.Warn("job dropped or moved by the reload: its old file stays", "job", name, "dir", d.dir)
			continue
		}
		res, err := d.d.Sync(nil)
		a.log.Warn("job dropped or moved by the reload: removed the files it wrote", "job", name, "dir", d.dir,
			"removed", res.Removed, "err", err)
	}
}

// webServer is the HTTP server of the daemon: its handler is that of the
// config in use.
type webServer struct {
	h      atomic.Pointer[http.Handler]
	cancel context.CancelFunc
	done   chan error // serveOn's result, once it returns
}

func startWebServer(l net.Listener, webConfig string, log *slog.Logger) *webServer {
	ctx, cancel := context.WithCancel(context.Background())
	w := &webServer{cancel: cancel, done: make(chan error, 1)}
	unset := http.Handler(http.HandlerFunc(func(rw http.ResponseWriter, _ *http.Request) {
		http.Error(rw, "starting", http.StatusServiceUnavailable)
	}))
	w.h.Store(&unset)
	go func() {
		w.done <- serveOn(ctx, l, http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) { (*w.h.Load()).ServeHTTP(rw, r) }),
			webConfig, log)
	}()
	return w
}

func (w *webServer) set(h http.Handler) {
	if w != nil {
		w.h.Store(&h)
	}
}

// stop shuts the server down and waits for it. Nil-safe.
func (w *webServer) stop() {
	if w != nil {
		w.cancel()
		<-w.done
		w.done <- nil // a second stop returns at once
	}
}

// serve runs the Sharder (and the registrar with it) with srv serving its
// handler, until ctx ends (nil) or a part of it fails (its error, naming the
// part). It loads the config again on each reload request: one that builds
// (and binds its address, if that moved) ends serve with errReload,
// leaving the registrations in place, and daemon serves it; one that does
// not is logged and the running config stays.
func (a *app) serve(ctx context.Context, srv *webServer) error {
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
			if err == nil && next.cfg.Listen != a.cfg.Listen && next.cfg.Listen != "" {
				if next.listener, err = net.Listen("tcp", next.cfg.Listen); err != nil {
					err = fmt.Errorf("listen: %w", err)
				}
			}
			if err == nil && next.cfg.Listen == "" && a.cfg.Listen != "" {
				err = errors.New("listen: a reload cannot turn the HTTP server off; restart for that")
			}
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
	a.log.Info("prome-shard running", "version", version.Version, "jobs", len(a.cfg.Jobs), "listen", a.cfg.Listen, "self", a.flags.Member)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return a.sharder.Run(gctx, nil) }) // nil after a signal
	if srv != nil {
		srv.set(a.handler(gctx))
		g.Go(func() error {
			select {
			case err := <-srv.done:
				srv.done <- err // for stop
				return fmt.Errorf("http server on %s: %w", a.cfg.Listen, cmp.Or(err, errors.New("stopped")))
			case <-gctx.Done():
				return nil
			}
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
	mux.HandleFunc("/-/reload", a.lifecycle([]string{http.MethodPost, http.MethodPut}, func(w http.ResponseWriter, r *http.Request) {
		a.serveReload(ctx, w, r)
	}))
	mux.HandleFunc("/-/guard/release", a.lifecycle([]string{http.MethodPost}, func(w http.ResponseWriter, r *http.Request) {
		held, err := a.sharder.ReleaseGuard(r.URL.Query().Get("job"))
		switch {
		case err != nil:
			http.Error(w, err.Error(), http.StatusNotFound)
		case !held:
			fmt.Fprintln(w, "the partition guard was not holding")
		default:
			fmt.Fprintln(w, "partition guard released: the move goes on")
		}
	}))
	prefix, _ := routePrefix(a.flags) // checked with the flags
	if prefix == "/" {
		return mux
	}
	root := http.NewServeMux()
	root.Handle(prefix+"/", http.StripPrefix(prefix, mux))
	root.Handle("GET /{$}", http.RedirectHandler(prefix+"/", http.StatusFound))
	return root
}

// lifecycle serves f for methods when --web.enable-lifecycle is on: 403
// when it is off, 405 for another method.
func (a *app) lifecycle(methods []string, f http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		switch {
		case !a.flags.Lifecycle:
			http.Error(w, "the lifecycle API is off (start with --web.enable-lifecycle)", http.StatusForbidden)
		case !slices.Contains(methods, r.Method):
			w.Header().Set("Allow", strings.Join(methods, ", "))
			http.Error(w, "use "+methods[0], http.StatusMethodNotAllowed)
		default:
			f(w, r)
		}
	}
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
