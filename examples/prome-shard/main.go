package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	_ "github.com/prometheus/prometheus/discovery/install" // every Prometheus SD, for prometheus_sd
	"golang.org/x/sync/errgroup"

	"github.com/promshard/promshard"
)

// version is set with -ldflags "-X main.version=…", else from the build info.
var version = ""

// Flags are the command line.
type Flags struct {
	Config, Member, Listen string
	Once, DryRun, Version  bool
	LogLevel               slog.Level
}

func parseFlags(args []string, stderr io.Writer) (Flags, error) {
	var f Flags
	fs := flag.NewFlagSet("prome-shard", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&f.Config, "config", "", "path of the YAML config file (required)")
	fs.StringVar(&f.Member, "member", "", "self mode: run beside the collector with this ID, write and reload only its file")
	fs.StringVar(&f.Listen, "listen", "", "HTTP listen address, overrides the config's listen")
	fs.BoolVar(&f.Once, "once", false, "reshard once, write, reload, print a summary and exit")
	fs.BoolVar(&f.DryRun, "dry-run", false, "reshard once and print the assignment summary; write and reload nothing")
	fs.BoolVar(&f.Version, "version", false, "print the version and exit")
	fs.TextVar(&f.LogLevel, "log.level", slog.LevelInfo, "log level: debug, info, warn or error")
	switch err := fs.Parse(args); {
	case err != nil:
		return f, err
	case fs.NArg() > 0:
		return f, fmt.Errorf("unexpected arguments %q", fs.Args())
	case !f.Version && f.Config == "":
		return f, errors.New("-config is required")
	}
	return f, nil
}

func main() {
	signal.Ignore(syscall.SIGHUP) // the daemon reloads its config on SIGHUP; nothing else dies of one
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// Exit codes of run.
const (
	exitOK     = 0 // done, or stopped by SIGINT/SIGTERM
	exitFailed = 1 // a -once run could not finish, or a part of the daemon failed
	exitConfig = 2 // a usage or config mistake, found at start
)

// run is main with its exit code; ctx ends with SIGINT or SIGTERM.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	f, err := parseFlags(args, stderr)
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(stderr, "prome-shard:", err)
		}
		return exitConfig
	}
	if bi, ok := debug.ReadBuildInfo(); ok && version == "" {
		version = bi.Main.Version
	}
	if f.Version {
		fmt.Fprintln(stdout, "prome-shard", version)
		return exitOK
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: f.LogLevel}))
	a, err := load(f, logger)
	if err != nil {
		fmt.Fprintf(stderr, "prome-shard: %s: %v\n", f.Config, err)
		return exitConfig
	}
	if f.Once || f.DryRun {
		ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
		err = a.once(ctx, stdout)
	} else {
		hup := make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
		defer signal.Stop(hup)
		for a.hup = hup; ; a.next.hup, a = hup, a.next { // serve the reloaded config
			if err = a.serve(ctx); !errors.Is(err, errReload) {
				break
			}
		}
	}
	if err != nil {
		fmt.Fprintln(stderr, "prome-shard:", err)
		return exitFailed
	}
	return exitOK
}

// load reads the config and builds the app: any error is a config mistake.
func load(f Flags, logger *slog.Logger) (*app, error) {
	cfg, err := LoadConfig(f.Config)
	if err == nil && f.Listen != "" {
		cfg.Listen = f.Listen
		err = cfg.checkListen("-listen")
	}
	if err != nil {
		return nil, err
	}
	return newApp(cfg, f, logger)
}

// errReload ends serve when a SIGHUP brought a config that builds.
var errReload = errors.New("config reloaded")

// reloadOnHUP loads the config again on each SIGHUP. One that builds ends
// serve with errReload, leaving the registrations in place, and run serves
// it; one that does not is logged and the running config stays.
func (a *app) reloadOnHUP(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-a.hup:
			next, err := load(a.flags, a.log)
			if err == nil {
				a.next = next
				a.registrar.Keep()
				return errReload
			}
			a.reloaded.Set(0)
			a.log.Error("config reload failed; the running config stays", "err", err)
		}
	}
}

// serve runs the daemon's parts until ctx ends (nil) or one of them fails
// (its error, naming the part, logged); the others are stopped either way.
func (a *app) serve(ctx context.Context) error {
	parent := ctx
	g, ctx := errgroup.WithContext(ctx)
	part := func(name string, fn func(context.Context) error) {
		g.Go(func() error {
			if err := fn(ctx); err != nil && parent.Err() == nil {
				if !errors.Is(err, errReload) {
					a.log.Error("a part failed; stopping", "part", name, "err", err)
				}
				return fmt.Errorf("%s: %w", name, err)
			}
			return nil
		})
	}
	if a.cfg.Listen != "" {
		part("http server", a.serveHTTP)
	}
	if a.registrar != nil {
		part("consul registrar", a.registrar.Run)
	}
	part("config reload", a.reloadOnHUP)
	part("sharder", func(ctx context.Context) error {
		<-a.registrar.Ready() // its collectors registered and checked (at once when none)
		return a.sharder.Run(ctx, nil)
	})
	a.log.Info("prome-shard running", "version", version, "jobs", len(a.cfg.Jobs), "listen", a.cfg.Listen, "self", a.flags.Member)
	err := g.Wait() // nil after a signal: parts then return nil
	a.log.Info("stopped")
	return err
}

// serveHTTP serves the Sharder's handler, /metrics and /-/healthy.
func (a *app) serveHTTP(ctx context.Context) error {
	mux := http.NewServeMux()
	mux.Handle("/", a.sharder.Handler())
	mux.Handle("GET /metrics", promhttp.HandlerFor(a.reg, promhttp.HandlerOpts{Registry: a.reg}))
	mux.HandleFunc("GET /-/healthy", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "prome-shard is healthy.") })
	return promshard.Serve(ctx, a.cfg.Listen, mux)
}
