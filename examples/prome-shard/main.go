package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	_ "github.com/prometheus/prometheus/discovery/consul" // the SDs of a Consul-based VM fleet, which build in seconds;
	_ "github.com/prometheus/prometheus/discovery/dns"    // -tags promsd_all (sd_all.go) builds every one
	_ "github.com/prometheus/prometheus/discovery/file"
	_ "github.com/prometheus/prometheus/discovery/http"

	"golang.org/x/sync/errgroup"

	"github.com/promshard/promshard/shard"
	"github.com/promshard/promshard/web"
)

// sdBuild says which Prometheus SDs this build has.
var sdBuild = "this build has consul, dns, file and http; build with -tags promsd_all for every Prometheus SD"

// version is set with -ldflags "-X main.version=…", else from the build info.
var version = ""

// Flags are the command line.
type Flags struct {
	Config, Member, Listen, From, Output string
	Once, DryRun, Version, Simulate      bool
	LogLevel                             slog.Level
	Change                               shard.Change // simulate: -remove, -add, -weight
	Capacity                             int
}

func parseFlags(args []string, stderr io.Writer) (Flags, error) {
	var f Flags
	sim := len(args) > 0 && args[0] == "simulate" // a dry run that prints what a change would move
	if sim {
		args = args[1:]
	}
	fs := flag.NewFlagSet("prome-shard", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&f.Config, "config", "", "path of the YAML config file (required)")
	fs.StringVar(&f.Member, "member", "", "self mode: run beside the collector with this ID, write and reload only its file")
	fs.StringVar(&f.Listen, "listen", "", "HTTP listen address, overrides the config's listen")
	fs.BoolVar(&f.Once, "once", false, "reshard once, write, reload, print a summary and exit")
	fs.BoolVar(&f.DryRun, "dry-run", false, "reshard once and print the assignment summary; write and reload nothing")
	fs.BoolVar(&f.Version, "version", false, "print the version and exit")
	fs.TextVar(&f.LogLevel, "log.level", slog.LevelInfo, "log level: debug, info, warn or error")
	var remove, add, weight []string
	for name, list := range map[string]*[]string{"remove": &remove, "add": &add, "weight": &weight} {
		fs.Func(name, "simulate: a collector that leaves (ID), joins (ID[:WEIGHT]) or gets a weight (ID=W); repeat",
			func(v string) error { *list = append(*list, v); return nil })
	}
	fs.StringVar(&f.From, "from", "", "simulate: a saved /api/v1/assignment instead of -config")
	fs.StringVar(&f.Output, "o", "table", "simulate: table or json")
	fs.IntVar(&f.Capacity, "capacity", 0, "simulate: the most targets a collector may hold (0: no cap)")
	err := fs.Parse(args)
	if f.Simulate, f.DryRun = sim, f.DryRun || sim; err == nil {
		f.Change, err = web.ParseChange(remove, add, weight)
	}
	switch {
	case err != nil:
		return f, err
	case fs.NArg() > 0:
		return f, fmt.Errorf("unexpected arguments %q", fs.Args())
	case f.Output != "table" && f.Output != "json":
		return f, fmt.Errorf("-o %q: want table or json", f.Output)
	case !f.Version && (f.Config == "") == (f.From == ""):
		return f, errors.New("-config is required (simulate: -config or -from)")
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
	var a *app
	if f.From == "" { // simulate -from needs no config
		if a, err = load(f, logger); err != nil {
			fmt.Fprintf(stderr, "prome-shard: %s: %v\n", f.Config, err)
			return exitConfig
		}
	}
	if f.From != "" {
		err = simulateSaved(f, stdout)
	} else if f.Once || f.DryRun { // simulate is a dry run
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
		if errors.As(err, new(bindError)) {
			return exitConfig
		}
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

// bindError is a listen address that cannot be bound: a config mistake,
// found before any work.
type bindError struct{ error }

func (e bindError) Unwrap() error { return e.error }

// errReload ends serve when a SIGHUP brought a config that builds.
var errReload = errors.New("config reloaded")

// serve runs the Sharder (its HTTP server and registrar with it) until ctx
// ends (nil) or a part of it fails (its error, naming the part). It loads
// the config again on each SIGHUP: one that builds ends serve with
// errReload, leaving the registrations in place, and run serves it; one
// that does not is logged and the running config stays.
func (a *app) serve(ctx context.Context) error {
	ctx, reload := context.WithCancelCause(ctx)
	done := make(chan struct{})
	defer func() { reload(nil); <-done }()
	go func() {
		defer close(done)
		for {
			select {
			case <-ctx.Done():
				return
			case <-a.hup:
			}
			next, err := load(a.flags, a.log)
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
	a.log.Info("prome-shard running", "version", version, "jobs", len(a.cfg.Jobs), "listen", a.cfg.Listen, "self", a.flags.Member)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return a.sharder.Run(gctx, nil) }) // nil after a signal
	if l != nil {
		h := web.Handler(a.sharder, web.Options{Gatherer: a.reg, Pprof: a.cfg.Pprof, Logger: a.log})
		g.Go(func() error {
			if err := serveOn(gctx, l, h); err != nil {
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

// simulateSaved is simulate over a saved /api/v1/assignment (-from).
func simulateSaved(f Flags, w io.Writer) error {
	r, err := os.Open(f.From)
	if err != nil {
		return err
	}
	defer r.Close()
	sims, err := web.SimulateSaved(r, f.Change, f.Capacity)
	if err != nil {
		return err
	}
	return writeSimulations(w, sims, f.Output)
}
