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
)

// version is set at build time with -ldflags "-X main.version=…".
var version = ""

func versionString() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "devel"
}

// Flags are the command line.
type Flags struct {
	Config   string
	Member   string
	Listen   string
	Once     bool
	DryRun   bool
	Version  bool
	LogLevel string
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
	if err := fs.Parse(args); err != nil {
		return f, err
	}
	if fs.NArg() > 0 {
		return f, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if !f.Version && f.Config == "" {
		return f, errors.New("-config is required")
	}
	return f, nil
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is main with its exit code: 0 on success or a signal, 1 when a
// -once run could not finish or the daemon failed, 2 for usage and config
// mistakes.
func run(args []string, stdout, stderr io.Writer) int {
	f, err := parseFlags(args, stderr)
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(stderr, "prome-shard:", err)
		}
		return 2
	}
	if f.Version {
		fmt.Fprintln(stdout, "prome-shard", versionString())
		return 0
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(f.LogLevel)); err != nil {
		fmt.Fprintf(stderr, "prome-shard: -log.level %q: want debug, info, warn or error\n", f.LogLevel)
		return 2
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	cfg, err := LoadConfig(f.Config)
	if err != nil {
		fmt.Fprintf(stderr, "prome-shard: %s: %v\n", f.Config, err)
		return 2
	}
	if f.Listen != "" {
		cfg.Listen = f.Listen
	}
	a, err := newApp(cfg, f, logger, stdout)
	if err != nil {
		var ce configError
		if errors.As(err, &ce) {
			fmt.Fprintf(stderr, "prome-shard: %s: %v\n", f.Config, err)
			return 2
		}
		fmt.Fprintln(stderr, "prome-shard:", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if f.Once || f.DryRun {
		ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
		if err := a.once(ctx); err != nil {
			fmt.Fprintln(stderr, "prome-shard:", err)
			return 1
		}
		return 0
	}
	if err := a.serve(ctx); err != nil {
		fmt.Fprintln(stderr, "prome-shard:", err)
		return 1
	}
	return 0
}
