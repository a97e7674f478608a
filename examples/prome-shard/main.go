package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"os/signal"
	"path"
	"runtime/debug"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/alecthomas/kingpin/v2"
	_ "github.com/prometheus/prometheus/discovery/consul" // the SDs of a Consul-based VM fleet, which build in seconds;
	_ "github.com/prometheus/prometheus/discovery/dns"    // -tags promsd_kubernetes (sd_kubernetes.go) adds Kubernetes,
	_ "github.com/prometheus/prometheus/discovery/file"   // -tags promsd_all (sd_all.go) builds every one
	_ "github.com/prometheus/prometheus/discovery/http"

	"github.com/prometheus/common/promslog"
	promslogflag "github.com/prometheus/common/promslog/flag"
	"github.com/prometheus/common/version"

	"github.com/promshard/promshard/shard"
	"github.com/promshard/promshard/web"
)

// sdBuilt names the Prometheus SDs this build has; a file behind a build
// tag adds its own.
var sdBuilt = []string{"consul", "dns", "file", "http"}

// sdEvery is set by a build with every Prometheus SD (-tags promsd_all).
var sdEvery bool

// sdBuild says which Prometheus SDs this build has, and how to get more.
func sdBuild() string {
	if sdEvery {
		return "this build has every Prometheus SD"
	}
	names := slices.Compact(slices.Sorted(slices.Values(sdBuilt)))
	more := "build with -tags promsd_all for every Prometheus SD"
	if !slices.Contains(names, "kubernetes") {
		more = "build with -tags promsd_kubernetes for Kubernetes, -tags promsd_all for every Prometheus SD"
	}
	return fmt.Sprintf("this build has %s and %s; %s", strings.Join(names[:len(names)-1], ", "), names[len(names)-1], more)
}

// Commands.
const (
	cmdRun         = "run"
	cmdCheckConfig = "check config"
	cmdSimulate    = "simulate"
	cmdDeregister  = "deregister"
)

// Flags are the command line.
type Flags struct {
	Command string // cmdRun, cmdCheckConfig, cmdSimulate or cmdDeregister
	Config  string // --config.file
	Member  string // run --member: self mode
	// Web: --web.listen-address (overrides the config's listen), TLS and
	// basic auth, the lifecycle endpoint, and where the page is served.
	Listen, WebConfig, RoutePrefix, ExternalURL string
	Lifecycle                                   bool
	Once, DryRun                                bool
	Log                                         promslog.Config
	// simulate: the change, a saved assignment instead of the config, the
	// printout.
	Change   shard.Change
	Capacity int
	From     string
	Output   string
}

// errExit ends parseFlags after --help or --version: exit with code.
type errExit struct{ code int }

func (e errExit) Error() string { return fmt.Sprintf("exit %d", e.code) }

// oldFlags are the single-dash flags of earlier releases, kept as hidden
// aliases for one release.
var oldFlags = map[string]string{"-config": "--config.file", "--config": "--config.file", "-listen": "--web.listen-address",
	"--listen": "--web.listen-address", "-member": "--member", "-once": "--once", "-dry-run": "--dry-run",
	"-version": "--version", "-log.level": "--log.level", "-remove": "--remove", "-add": "--add", "-weight": "--weight",
	"-from": "--from", "-capacity": "--capacity"}

// modernize rewrites the old single-dash flags and warns once for each.
func modernize(args []string, stderr io.Writer) []string {
	out := make([]string, 0, len(args))
	for _, a := range args {
		name, value, hasValue := strings.Cut(a, "=")
		if nw, ok := oldFlags[name]; ok {
			fmt.Fprintf(stderr, "prome-shard: %s is deprecated and goes in the next release; use %s\n", name, nw)
			if a = nw; hasValue {
				a += "=" + value
			}
		}
		out = append(out, a)
	}
	return out
}

func parseFlags(args []string, stdout, stderr io.Writer) (Flags, error) {
	var f Flags
	app := kingpin.New("prome-shard", "Shards Prometheus scrape targets over a pool of collectors found in Consul, and keeps each collector's file_sd file (or http_sd endpoint) current. "+sdBuild()+".")
	app.UsageWriter(stdout).ErrorWriter(stderr)
	var exit *errExit
	app.Terminate(func(code int) {
		if exit == nil {
			exit = &errExit{code}
		}
	})
	app.Version(version.Print("prome-shard"))
	app.HelpFlag.Short('h')
	app.Flag("config.file", "Path of the YAML config file.").Default("prome-shard.yml").StringVar(&f.Config)
	app.Flag("web.listen-address", "Address of the HTTP endpoints (page, API, metrics); overrides the config's listen.").
		PlaceHolder("HOST:PORT").StringVar(&f.Listen)
	app.Flag("web.config.file", "Path of an exporter-toolkit web config that enables TLS or basic auth "+
		"(https://github.com/prometheus/exporter-toolkit/blob/master/docs/web-configuration.md).").StringVar(&f.WebConfig)
	app.Flag("web.enable-lifecycle", "Serve POST /-/reload, which reloads the config as SIGHUP does.").BoolVar(&f.Lifecycle)
	app.Flag("web.external-url", "The URL under which prome-shard is reached (behind a reverse proxy); its path is the default route prefix.").
		PlaceHolder("URL").StringVar(&f.ExternalURL)
	app.Flag("web.route-prefix", "Path prefix of every HTTP endpoint. Default: the path of --web.external-url, else /.").
		PlaceHolder("PATH").StringVar(&f.RoutePrefix)
	promslogflag.AddFlags(app, &f.Log)

	run := app.Command(cmdRun, "Run the sharder (the default command).").Default()
	run.Flag("member", "Self mode: run beside the collector with this ID; write and reload only its file.").StringVar(&f.Member)
	run.Flag("once", "Reshard once, write, reload, print a summary and exit.").BoolVar(&f.Once)
	run.Flag("dry-run", "Reshard once and print the assignment; write and reload nothing.").BoolVar(&f.DryRun)

	check := app.Command("check", "Check resources without running anything.")
	check.Command("config", "Check the config file offline (no Consul needed): every field, output directories and file names; "+
		"print what would run. Exit 0 when it is good, 2 when not.")

	sim := app.Command(cmdSimulate, "Print what a change of collectors would move, from the collectors as they are now "+
		"(or from a saved /api/v1/assignment); change nothing.")
	var remove, add, weight []string
	sim.Flag("remove", "A collector that leaves (ID); repeat.").PlaceHolder("ID").StringsVar(&remove)
	sim.Flag("add", "A collector that joins (ID[:WEIGHT]); repeat.").PlaceHolder("ID[:W]").StringsVar(&add)
	sim.Flag("weight", "A collector that gets a weight (ID=W); repeat.").PlaceHolder("ID=W").StringsVar(&weight)
	sim.Flag("from", "A saved /api/v1/assignment instead of --config.file.").PlaceHolder("FILE").StringVar(&f.From)
	sim.Flag("output", "table or json.").Short('o').Default("table").EnumVar(&f.Output, "table", "json")
	sim.Flag("capacity", "The most targets a collector may hold (0: no cap).").IntVar(&f.Capacity)

	app.Command(cmdDeregister, "Deregister from Consul every collector that the config registers (collectors.register), "+
		"for a pool taken out of service. A stop of the daemon leaves them registered.")

	var configSet bool
	app.GetFlag("config.file").IsSetByUser(&configSet)
	cmd, err := app.Parse(modernize(args, stderr))
	if exit != nil {
		return f, *exit
	}
	if err != nil {
		return f, err
	}
	f.Command = cmd
	if cmd == cmdSimulate {
		f.DryRun = true
		if f.From != "" && configSet {
			return f, errors.New("simulate: give --config.file or --from, not both")
		}
		if f.Change, err = web.ParseChange(remove, add, weight); err != nil {
			return f, err
		}
	}
	if f.Once && f.DryRun && cmd == cmdRun {
		return f, errors.New("--once and --dry-run: give one")
	}
	if _, err := routePrefix(f); err != nil {
		return f, err
	}
	return f, nil
}

// routePrefix is where the HTTP endpoints are served: --web.route-prefix,
// else the path of --web.external-url, else "/"; without a trailing slash
// unless it is "/".
func routePrefix(f Flags) (string, error) {
	p := f.RoutePrefix
	if f.ExternalURL != "" {
		u, err := url.Parse(f.ExternalURL)
		if err != nil || u.Scheme == "" || u.Host == "" {
			return "", fmt.Errorf("--web.external-url: %q is not an absolute URL", f.ExternalURL)
		}
		if p == "" {
			p = u.Path
		}
	}
	return path.Clean("/" + p), nil
}

// setVersion fills prometheus/common/version from the build when the link
// did not (-ldflags "-X github.com/prometheus/common/version.Version=…").
func setVersion() {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return
	}
	if version.Version == "" {
		version.Version = bi.Main.Version
		if version.Version == "" || version.Version == "(devel)" {
			version.Version = "devel"
		}
	}
	for _, s := range bi.Settings {
		if s.Key == "vcs.time" && version.BuildDate == "" {
			version.BuildDate = s.Value
		}
	}
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

// onceTimeout bounds a --once or --dry-run run; dryRunConsulWait bounds how
// long a dry run waits for Consul before it says it cannot reach it.
const (
	onceTimeout      = 2 * time.Minute
	dryRunConsulWait = 5 * time.Second
)

// run is main with its exit code; ctx ends with SIGINT or SIGTERM.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	setVersion()
	f, err := parseFlags(args, stdout, stderr)
	if exit := (errExit{}); errors.As(err, &exit) {
		if exit.code != 0 {
			return exitConfig
		}
		return exitOK
	}
	if err != nil {
		fmt.Fprintln(stderr, "prome-shard:", err)
		return exitConfig
	}
	f.Log.Writer = stderr
	logger := promslog.New(&f.Log)
	switch {
	case f.From != "":
		err = simulateSaved(ctx, f, stdout)
	case f.Command == cmdCheckConfig:
		return checkConfig(f, stdout, stderr, logger)
	default:
		a, err := load(f, logger)
		if err != nil {
			fmt.Fprintf(stderr, "prome-shard: %s: %v\n", f.Config, err)
			return exitConfig
		}
		return a.main(ctx, stdout, stderr)
	}
	if err != nil {
		fmt.Fprintln(stderr, "prome-shard:", err)
		return exitFailed
	}
	return exitOK
}

// main runs a loaded config's command and returns the exit code.
func (a *app) main(ctx context.Context, stdout, stderr io.Writer) int {
	var err error
	switch {
	case a.flags.Command == cmdDeregister:
		ctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		err = a.deregister(ctx, stdout)
	case a.flags.Once || a.flags.DryRun: // simulate is a dry run
		ctx, cancel := context.WithTimeout(ctx, onceTimeout)
		defer cancel()
		err = a.once(ctx, stdout)
	default:
		err = a.daemon(ctx)
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
		err = cfg.checkListen("--web.listen-address")
	}
	if err == nil {
		err = checkWebConfig(f.WebConfig)
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

// simulateSaved is simulate over a saved /api/v1/assignment (--from).
func simulateSaved(ctx context.Context, f Flags, w io.Writer) error {
	r, err := os.Open(f.From)
	if err != nil {
		return err
	}
	defer r.Close()
	sims, err := web.SimulateSaved(ctx, r, f.Change, f.Capacity)
	if err != nil {
		return err
	}
	return writeSimulations(w, sims, f.Output)
}
