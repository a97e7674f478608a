package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"
)

// version is set at build time with -ldflags "-X main.version=…", or
// taken from the module's build information.
var version = ""

// Flags are the command line.
type Flags struct {
	Config, Member, Listen, LogLevel string
	Once, DryRun, Version            bool
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
	fs.StringVar(&f.LogLevel, "log.level", "info", "log level: debug, info, warn or error")
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
	if f.Version {
		if bi, ok := debug.ReadBuildInfo(); ok && version == "" {
			version = bi.Main.Version
		}
		fmt.Fprintln(stdout, "prome-shard", version)
		return exitOK
	}
	var level slog.Level
	cfg, err := LoadConfig(f.Config)
	if err == nil && f.Listen != "" {
		cfg.Listen = f.Listen
		err = cfg.checkListen("-listen")
	}
	if err == nil {
		if err = level.UnmarshalText([]byte(f.LogLevel)); err != nil {
			err = fmt.Errorf("-log.level %q: want debug, info, warn or error", f.LogLevel)
		}
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	var a *app
	if err == nil {
		a, err = newApp(cfg, f, logger)
	}
	if err != nil {
		fmt.Fprintf(stderr, "prome-shard: %s: %v\n", f.Config, err)
		return exitConfig
	}
	if f.Once || f.DryRun {
		ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
		err = a.once(ctx, stdout)
	} else {
		err = a.serve(ctx)
	}
	if err != nil {
		fmt.Fprintln(stderr, "prome-shard:", err)
		return exitFailed
	}
	return exitOK
}

// serve runs the daemon's parts until ctx ends (nil) or one of them fails
// (its error, naming the part, logged); the others are stopped either way.
func (a *app) serve(ctx context.Context) error {
	parent := ctx
	g, ctx := errgroup.WithContext(ctx)
	part := func(name string, fn func(context.Context) error) {
		g.Go(func() error {
			if err := fn(ctx); err != nil && parent.Err() == nil {
				a.log.Error("a part failed; stopping", "part", name, "err", err)
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
	part("sharder", func(ctx context.Context) error { return a.sharder.Run(ctx, nil) })
	a.log.Info("prome-shard running", "version", version, "jobs", len(a.cfg.Jobs), "listen", a.cfg.Listen, "self", a.flags.Member)
	if err := g.Wait(); err != nil && parent.Err() == nil {
		return err
	}
	a.log.Info("stopped")
	return nil
}
