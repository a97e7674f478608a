package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	versioncollector "github.com/prometheus/client_golang/prometheus/collectors/version"
	promcfg "github.com/prometheus/common/config"
	"github.com/prometheus/common/model"

	"github.com/promshard/promshard"
	"github.com/promshard/promshard/audit"
	"github.com/promshard/promshard/elect"
	"github.com/promshard/promshard/filesd"
	"github.com/promshard/promshard/reload"
	"github.com/promshard/promshard/shard"
	"github.com/promshard/promshard/targets"
	"github.com/promshard/promshard/targets/promsd"
	"github.com/promshard/promshard/watch"
	memberssd "github.com/promshard/promshard/watch/promsd"
)

// app is the library's values built from one config.
type app struct {
	cfg       *Config
	flags     Flags
	log       *slog.Logger
	reg       *prometheus.Registry
	sharder   *promshard.Sharder
	registrar *watch.Registrar // nil when nothing is registered
	consul    *api.Client
	watchers  map[string]*watch.ConsulWatcher // by service and tags: jobs share one
	useConsul bool                            // a job watches Consul
	selfNode  string                          // self mode: the local Consul agent's node
	reloaded  prometheus.Gauge                // promshard_config_last_reload_successful
	reloads   chan reloadRequest              // SIGHUP and POST /-/reload: load the config again
	listener  net.Listener                    // bound for this config (at start, or when a reload moved it)
	dirs      map[string]jobDir               // each job's output directory
	next      *app                            // the app of a reloaded config
}

func newApp(cfg *Config, f Flags, logger *slog.Logger) (*app, error) {
	reg := prometheus.NewRegistry()
	reloaded := prometheus.NewGauge(prometheus.GaugeOpts{Name: "promshard_config_last_reload_successful",
		Help: "1 when the config in use is the one the file held at the last load or SIGHUP, 0 when that failed."})
	reloaded.Set(1)
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), reloaded,
		versioncollector.NewCollector("promshard"))
	a := &app{cfg: cfg, flags: f, log: logger, reg: reg, watchers: map[string]*watch.ConsulWatcher{}, reloaded: reloaded,
		dirs: map[string]jobDir{}}
	ac, _ := cfg.Consul.APIConfig() // checked with the config
	var err error
	if a.consul, err = watch.NewConsulClient(ac, 0); err != nil {
		return nil, err
	}
	if f.Member != "" && f.Command == cmdRun && !f.DryRun && slices.ContainsFunc(cfg.Jobs, func(jc JobConfig) bool {
		return jc.Collectors.ConsulService != ""
	}) {
		a.selfNode = localNode(a.consul, logger)
	}
	var jobs []promshard.Job
	var regs []watch.Registration
	for i := range cfg.Jobs {
		jc := &cfg.Jobs[i]
		j, err := a.job(jc)
		if err != nil {
			return nil, fmt.Errorf("jobs (%s).%w", jc.Name, err)
		}
		jobs = append(jobs, j)
		c := jc.Collectors.Check
		check := watch.Check{Type: watch.CheckType(c.Type), Path: c.Path, Interval: c.Interval.Duration,
			Timeout: c.Timeout.Duration, DeregisterCriticalAfter: c.DeregisterCriticalAfter.Duration}
		for _, m := range jc.Collectors.Register { // the service ID defaults to service-address-port
			regs = append(regs, watch.Registration{Service: jc.Collectors.ConsulService, ID: m.ID, Address: m.Address,
				Port: m.Port, Tags: append(slices.Clone(jc.Collectors.Tags), m.Tags...), Meta: m.Meta, Weight: m.Weight, Check: check})
		}
	}
	if len(regs) > 0 && (!f.DryRun || f.Command == cmdCheckConfig) {
		if a.registrar, err = watch.NewRegistrar(a.consul.Agent(), regs, watch.RegistrarOptions{Interval: cfg.RefreshInterval.Duration,
			Health: a.consul.Health(), Owners: a.consul.KV(), DeregisterOnStop: cfg.DeregisterOnStop, Logger: logger}); err != nil {
			return nil, fmt.Errorf("collectors.register: %w", err)
		}
	}
	scheme := cmp.Or(cfg.Audit.Scheme, "http")
	opts := promshard.Options{RefreshInterval: cfg.RefreshInterval.Duration, DryRun: f.DryRun, Logger: logger, Registerer: reg,
		Registrar:    a.registrar,
		Audit:        promshard.AuditOptions{Interval: cfg.Audit.Interval.Duration, RepairAfter: cfg.Audit.RepairAfter.Duration},
		Handoff:      promshard.HandoffOptions{Enabled: cfg.Handoff.Mode != "off", Timeout: cfg.Handoff.Timeout.Duration},
		CollectorURL: func(m watch.Member) string { return scheme + "://" + m.HostPort() }}
	client, err := httpClient(cfg.Audit.Client, "audit")
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	if !cfg.Audit.Disabled && !f.DryRun && !f.Once {
		opts.Audit.Options = &audit.Options{Grace: cfg.Audit.Grace.Duration, Concurrency: cfg.Audit.Concurrency, Client: client}
	}
	if cfg.lock.Key != "" && f.Once && !f.DryRun {
		return nil, errors.New("leader_election: --once takes no lock, so it would write beside the leader; use --dry-run")
	} else if cfg.lock.Key != "" && !f.DryRun { // self mode only reads the epochs
		cfg.lock.Observe, cfg.lock.Logger = f.Member != "", logger
		lock, err := elect.NewConsulLock(a.consul, cfg.lock)
		if err != nil {
			return nil, fmt.Errorf("leader_election: %w", err)
		}
		opts.Elector, opts.Store = lock, lock
	}
	a.sharder, err = promshard.New(jobs, opts)
	return a, err
}

// job builds one job's library values from its config.
func (a *app) job(jc *JobConfig) (promshard.Job, error) {
	j := promshard.Job{Name: jc.Name, Ring: jc.Ring, Self: a.flags.Member, SelfNode: a.selfNode, ReloadConcurrency: jc.Reload.Concurrency,
		SpreadBy: jc.SpreadBy, ScrapePool: jc.ScrapePool, DrainTag: jc.Collectors.DrainTag, Balance: jc.balance(),
		TargetOptions: targets.JobOptions{AllowEmpty: jc.Targets.AllowEmpty}}
	j.Shard.Replicas, j.Shard.KeyLabel = jc.Replicas, model.LabelName(jc.ShardKey)
	j.Relabel, j.PreferZoneLabel, j.PinFallback = jc.Relabel, jc.PreferZoneLabel, jc.PinFallback
	var err error
	g := jc.Guard
	j.Guard = promshard.PartitionGuard{Share: g.Share, Settle: g.Settle.Duration, MaxMoveFraction: g.MaxMoveFraction,
		Step: g.Step.Duration, ProbeInterval: g.ProbeInterval.Duration, ProbeTimeout: g.ProbeTimeout.Duration, Window: g.Window.Duration}
	if j.Guard.Probe, err = watch.ProbeByName(cmp.Or(g.Probe, "http")); err != nil {
		return j, fmt.Errorf("partition_guard.probe: %w", err)
	}
	j.Quorum = promshard.Quorum{MinMembers: jc.Quorum.MinMembers, Wait: jc.Quorum.Wait.Duration, Refuse: jc.Quorum.OnTimeout == "refuse"}
	j.Known = append(registered(jc), static(jc)...)
	if j.Members, err = a.members(jc); err != nil {
		return j, fmt.Errorf("collectors: %w", err)
	}
	if j.Targets, err = a.provider(jc); err != nil {
		return j, fmt.Errorf("targets: %w", err)
	}
	if j.Reloader, err = reloader(jc.Reload); err != nil {
		return j, fmt.Errorf("reload: %w", err)
	}
	if o := jc.Output; o.Dir != "" {
		dir, err := filesd.NewDir(filesd.DirOptions{Dir: o.Dir, Template: o.File, Format: filesd.Format(o.Format), Create: true,
			Logger: a.log.With("job", jc.Name), Registerer: prometheus.WrapRegistererWith(prometheus.Labels{"shard_job": jc.Name}, a.reg)})
		if err != nil {
			return j, fmt.Errorf("output: %w", err)
		}
		if a.flags.Member == "" {
			j.Outputs = append(j.Outputs, dir)
			a.dirs[jc.Name] = jobDir{dir: o.Dir, d: dir}
		} else {
			a.dirs[jc.Name] = jobDir{dir: o.Dir} // self mode: only this collector's file, never another's
			mf, err := dir.File(a.flags.Member)
			if err != nil {
				return j, fmt.Errorf("output: --member %q: %w", a.flags.Member, err)
			}
			j.Outputs = append(j.Outputs, mf)
		}
	}
	if jc.Output.HTTPSD {
		j.Outputs = append(j.Outputs, &filesd.Handler{})
	}
	return j, nil
}

// localNode is the node name of the Consul agent prome-shard talks to (the
// local one, in self mode): the node of --member's instance when its
// service ID is registered on several nodes and the watcher names each
// ID@node. "" (with a warning) when the agent does not answer within 5 s.
func localNode(c *api.Client, log *slog.Logger) string {
	type answer struct {
		name string
		err  error
	}
	ch := make(chan answer, 1)
	go func() {
		name, err := c.Agent().NodeName()
		ch <- answer{name, err}
	}()
	select {
	case a := <-ch:
		if a.err == nil {
			return a.name
		}
		log.Warn("self mode: the local Consul agent's node name could not be read; an instance renamed ID@node will not be found",
			"err", a.err)
	case <-time.After(5 * time.Second):
		log.Warn("self mode: the local Consul agent did not tell its node name within 5 s; an instance renamed ID@node will not be found")
	}
	return ""
}

// jobDir is a job's output directory, and its writer in central mode.
type jobDir struct {
	dir string
	d   *filesd.Dir // nil in self mode
}

// registered are the collectors a job registers, each with its ID (the
// service ID, service-address-port by default).
func registered(jc *JobConfig) []watch.Member {
	ms := slices.Clone(jc.Collectors.Register)
	for i, m := range ms {
		if m.ID == "" {
			ms[i].ID = watch.Registration{Service: jc.Collectors.ConsulService, Address: m.Address, Port: m.Port}.ServiceID()
		}
	}
	return ms
}

// static are a job's static collectors, each with its ID (address:port by
// default, as watch.StaticWatcher names them).
func static(jc *JobConfig) []watch.Member {
	ms := slices.Clone(jc.Collectors.Static)
	for i, m := range ms {
		if m.ID == "" && m.Address != "" && m.Port > 0 {
			ms[i].ID = m.HostPort()
		}
	}
	return ms
}

// members returns the member source of a job.
func (a *app) members(jc *JobConfig) (watch.Source, error) {
	c := jc.Collectors
	if len(c.Static) > 0 {
		probe, err := watch.ProbeByName(c.Probe)
		if err != nil {
			return nil, err
		}
		return watch.NewStaticWatcher(watch.StaticOptions{Name: jc.Name, Members: c.Static, Probe: probe,
			Interval: c.ProbeInterval.Duration, Logger: a.log, Registerer: a.reg})
	}
	if sd := c.SD; sd != nil {
		probe, _ := sd.probe() // checked with the config
		return memberssd.New(memberssd.Options{Name: jc.Name, Configs: sd.sd, Relabel: sd.Relabel, Probe: probe,
			ProbeInterval: sd.ProbeInterval.Duration, ProbeTimeout: sd.ProbeTimeout.Duration, Settle: cmp.Or(sd.Settle.Duration, a.cfg.Settle.Duration),
			Logger: a.log, Registerer: a.reg})
	}
	if a.flags.DryRun && a.flags.Command == cmdRun && len(c.Register) > 0 {
		// A dry run registers nothing: it places over the collectors the
		// config registers, as healthy as a run would make them.
		return watch.NewStaticWatcher(watch.StaticOptions{Name: jc.Name, Members: registered(jc), Logger: a.log, Registerer: a.reg})
	}
	a.useConsul = true
	key := c.ConsulService + "/" + strings.Join(c.Tags, ",")
	if w, ok := a.watchers[key]; ok {
		return w, nil
	}
	w, err := watch.NewConsulWatcher(a.consul.Health(), watch.ConsulOptions{Service: c.ConsulService, Tags: c.Tags,
		Datacenter: a.cfg.Consul.Datacenter, Settle: a.cfg.Settle.Duration, Logger: a.log, Registerer: a.reg})
	a.watchers[key] = w
	return w, err
}

func (a *app) provider(jc *JobConfig) (targets.Provider, error) {
	t := jc.Targets
	switch {
	case len(t.Static) > 0:
		return targets.Static(t.Static), nil
	case len(t.FileSD) > 0:
		f, err := targets.NewFile(targets.FileOptions{Files: t.FileSD})
		if err == nil && !t.AllowEmpty {
			err = f.Check() // a path that matches nothing is a mistake at start
		}
		return f, err
	case t.HTTPSD != nil:
		client, err := httpClient(t.HTTPSD.Client, "http_sd")
		if err != nil {
			return nil, err
		}
		return targets.NewHTTPSD(targets.HTTPSDOptions{URL: t.HTTPSD.URL, Timeout: t.HTTPSD.Timeout.Duration, Client: client})
	default:
		return promsd.New(jc.Name, t.sd, promsd.Options{UpdateInterval: time.Second,
			Logger: a.log.With("job", jc.Name), Registerer: a.reg})
	}
}

func reloader(rc ReloadConfig) (reload.Reloader, error) {
	switch rc.Method {
	case "http":
		h := rc.HTTP
		client, err := httpClient(h.Client, "reload")
		if err != nil {
			return nil, err
		}
		return reload.NewHTTP(reload.HTTPOptions{Client: client, Path: h.Path, Scheme: h.Scheme, Timeout: h.Timeout.Duration, Retries: h.Retries})
	case "signal":
		return reload.NewSignal(reload.SignalOptions{PIDFile: rc.Signal.PIDFile})
	case "command":
		return reload.NewCommand(reload.CommandOptions{Args: rc.Command.Args, Timeout: rc.Command.Timeout.Duration})
	}
	return reload.None{}, nil
}

// httpClient is the client that a config's auth and TLS settings describe.
func httpClient(c promcfg.HTTPClientConfig, name string) (*http.Client, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return promcfg.NewClientFromConfig(c, name)
}

// once registers the collectors, reshards every job once, prints tables
// (or what a change would move: simulate).
func (a *app) once(ctx context.Context, w io.Writer) error {
	if a.useConsul { // a one-shot run fails fast, not after its timeout
		cctx, cancel := context.WithTimeout(ctx, dryRunConsulWait)
		_, err := a.consul.Status().LeaderWithQueryOptions((&api.QueryOptions{}).WithContext(cctx))
		cancel()
		if err != nil {
			return fmt.Errorf("consul at %s cannot be reached (waited %v): %w", cmp.Or(a.cfg.Consul.Address, "127.0.0.1:8500"),
				dryRunConsulWait, err)
		}
	}
	reports, err := a.sharder.Once(ctx, nil)
	if errors.Is(err, shard.ErrNoMembers) && a.useConsul && a.cfg.Consul.Token == "" && a.cfg.Consul.TokenFile == "" {
		err = fmt.Errorf("%w (Consul answered with no instance: if it enforces ACLs with default_policy deny, give consul.token "+
			"a token with service:read and node:read)", err)
	}
	if a.flags.Command == cmdSimulate && err == nil { // what the change would move, from the collectors as they are now
		sims := map[string]*shard.Simulation{}
		for _, name := range a.sharder.Jobs() {
			sim, err := a.sharder.Simulate(ctx, name, a.flags.Change, a.flags.Capacity)
			if err != nil {
				return fmt.Errorf("job %q: %w", name, err)
			}
			sims[name] = sim
		}
		return writeSimulations(w, sims, a.flags.Output)
	}
	for _, r := range reports {
		_ = writeReport(w, r)
	}
	return err
}
