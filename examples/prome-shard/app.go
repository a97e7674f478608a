package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery/targetgroup"

	"github.com/promshard/promshard/filesd"
	"github.com/promshard/promshard/reload"
	"github.com/promshard/promshard/targets"
	"github.com/promshard/promshard/targets/promsd"
	"github.com/promshard/promshard/watch"
)

// app is the composition of the library's packages for one config.
type app struct {
	cfg    *Config
	flags  Flags
	log    *slog.Logger
	out    io.Writer
	reg    *prometheus.Registry
	m      *appMetrics
	consul *api.Client

	sources  map[string]*source
	targets  *targets.Registry
	jobs     []*job
	jobByKey map[string]*job

	regMu      sync.Mutex
	registered map[string]bool // service IDs this process registered
}

// source is one member source, shared by the jobs that watch it.
type source struct {
	src  watch.Source
	jobs []*job
}

func newApp(cfg *Config, f Flags, logger *slog.Logger, out io.Writer) (*app, error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m, err := newAppMetrics(reg)
	if err != nil {
		return nil, err
	}
	a := &app{cfg: cfg, flags: f, log: logger, out: out, reg: reg, m: m,
		sources: map[string]*source{}, jobByKey: map[string]*job{}}
	a.targets, err = targets.NewRegistry(targets.RegistryOptions{Logger: logger, Registerer: reg})
	if err != nil {
		return nil, err
	}
	for i := range cfg.Jobs {
		if err := a.addJob(&cfg.Jobs[i]); err != nil {
			return nil, err
		}
	}
	return a, nil
}

func (a *app) consulClient() (*api.Client, error) {
	if a.consul != nil {
		return a.consul, nil
	}
	c := a.cfg.Consul
	ac := api.DefaultConfig()
	set := func(dst *string, v string) {
		if v != "" {
			*dst = v
		}
	}
	set(&ac.Address, c.Address)
	set(&ac.Scheme, c.Scheme)
	set(&ac.Token, c.Token)
	set(&ac.TokenFile, c.TokenFile)
	set(&ac.Datacenter, c.Datacenter)
	set(&ac.TLSConfig.CAFile, c.TLS.CAFile)
	set(&ac.TLSConfig.CertFile, c.TLS.CertFile)
	set(&ac.TLSConfig.KeyFile, c.TLS.KeyFile)
	set(&ac.TLSConfig.Address, c.TLS.ServerName)
	if c.TLS.InsecureSkipVerify {
		ac.TLSConfig.InsecureSkipVerify = true
	}
	client, err := watch.NewConsulClient(ac, 0)
	if err != nil {
		return nil, configError{fmt.Errorf("consul: %w", err)}
	}
	a.consul = client
	return client, nil
}

func (a *app) addJob(jc *JobConfig) error {
	j := &job{app: a, cfg: jc, trigger: make(chan struct{}, 1), haveCh: make(chan struct{})}
	at := "jobs (" + jc.Name + ")"
	// Members.
	key, err := a.addSource(jc)
	if err != nil {
		return err
	}
	a.sources[key].jobs = append(a.sources[key].jobs, j)
	// Targets.
	p, err := a.provider(jc)
	if err != nil {
		return configError{fmt.Errorf("%s.targets: %w", at, err)}
	}
	if err := a.targets.Register(jc.Name, p, targets.JobOptions{AllowEmpty: jc.Targets.AllowEmpty}); err != nil {
		return err
	}
	// Output.
	if jc.Output.Dir != "" && !a.flags.DryRun {
		if err := os.MkdirAll(jc.Output.Dir, 0o755); err != nil {
			return fmt.Errorf("%s.output.dir: %w", at, err)
		}
	}
	if jc.Output.Dir != "" {
		j.dir, err = filesd.NewDir(filesd.DirOptions{Dir: jc.Output.Dir, Template: jc.Output.File,
			Format: filesd.Format(jc.Output.Format), Logger: a.log.With("job", jc.Name), Registerer: a.wrapReg(jc.Name)})
		if err != nil {
			return configError{fmt.Errorf("%s.output: %w", at, err)}
		}
	}
	if jc.Output.HTTPSD {
		j.handler = &filesd.Handler{}
	}
	// Reload.
	r, err := reloader(jc.Reload)
	if err != nil {
		return configError{fmt.Errorf("%s.reload: %w", at, err)}
	}
	j.pool, err = reload.NewPool(r, reload.PoolOptions{Concurrency: jc.Reload.Concurrency,
		Logger: a.log.With("job", jc.Name), Registerer: a.wrapReg(jc.Name)})
	if err != nil {
		return err
	}
	a.jobs = append(a.jobs, j)
	a.jobByKey[jc.Name] = j
	return nil
}

// wrapReg labels a job's library metrics with the job.
func (a *app) wrapReg(job string) prometheus.Registerer {
	return prometheus.WrapRegistererWith(prometheus.Labels{"job": job}, a.reg)
}

// addSource returns the key of the member source of a job, creating it if
// no other job watches the same collectors.
func (a *app) addSource(jc *JobConfig) (string, error) {
	c := jc.Collectors
	if len(c.Static) > 0 {
		key := "static/" + jc.Name
		ms := make([]watch.Member, len(c.Static))
		for i, m := range c.Static {
			ms[i] = watch.Member{ID: m.ID, Address: m.Address, Port: m.Port, Weight: m.Weight, Tags: m.Tags, Meta: m.Meta}
		}
		var probe watch.Probe
		switch c.Probe {
		case "http":
			probe = watch.HTTPProbe(&http.Client{}, "")
		case "tcp":
			probe = watch.TCPProbe()
		}
		src, err := watch.NewStatic(watch.StaticOptions{Name: jc.Name, Members: ms, Probe: probe,
			Interval: c.probeInterval, Logger: a.log, Registerer: a.reg})
		if err != nil {
			return "", configError{fmt.Errorf("jobs (%s).collectors.static: %w", jc.Name, err)}
		}
		a.sources[key] = &source{src: src}
		return key, nil
	}
	key := "consul/" + c.ConsulService + "/" + strings.Join(c.Tags, ",")
	if _, ok := a.sources[key]; ok {
		return key, nil
	}
	client, err := a.consulClient()
	if err != nil {
		return "", err
	}
	w, err := watch.NewConsulWatcher(client.Health(), watch.ConsulOptions{Service: c.ConsulService, Tags: c.Tags,
		Datacenter: a.cfg.Consul.Datacenter, Settle: a.cfg.settle, Logger: a.log, Registerer: a.reg})
	if err != nil {
		return "", configError{fmt.Errorf("jobs (%s).collectors: %w", jc.Name, err)}
	}
	a.sources[key] = &source{src: w}
	return key, nil
}

func (a *app) provider(jc *JobConfig) (targets.Provider, error) {
	t := jc.Targets
	switch {
	case len(t.Static) > 0:
		var gs targets.Static
		for i, sg := range t.Static {
			g := &targetgroup.Group{Source: fmt.Sprintf("config/%s/%d", jc.Name, i), Labels: model.LabelSet{}}
			for k, v := range sg.Labels {
				g.Labels[model.LabelName(k)] = model.LabelValue(v)
			}
			for _, addr := range sg.Targets {
				g.Targets = append(g.Targets, model.LabelSet{model.AddressLabel: model.LabelValue(addr)})
			}
			gs = append(gs, g)
		}
		return gs, nil
	case len(t.FileSD) > 0:
		return targets.NewFile(targets.FileOptions{Files: t.FileSD})
	case t.HTTPSD != nil:
		o := targets.HTTPOptions{URL: t.HTTPSD.URL, Timeout: t.HTTPSD.timeout}
		if t.HTTPSD.BearerToken != "" {
			o.Header = http.Header{"Authorization": {"Bearer " + t.HTTPSD.BearerToken}}
		}
		return targets.NewHTTP(o)
	default:
		return promsd.New(jc.Name, t.sd, promsd.Options{UpdateInterval: time.Second,
			Logger: a.log.With("job", jc.Name), Registerer: a.reg})
	}
}

func reloader(rc ReloadConfig) (reload.Reloader, error) {
	switch rc.Method {
	case "http":
		h := rc.HTTP
		return reload.NewHTTP(reload.HTTPOptions{Path: h.Path, Scheme: h.Scheme, Timeout: h.timeout, Retries: h.Retries,
			Username: h.Username, Password: h.Password, BearerToken: h.BearerToken})
	case "signal":
		return reload.NewSignal(reload.SignalOptions{PIDFile: rc.Signal.PIDFile})
	case "command":
		return reload.NewCommand(reload.CommandOptions{Args: rc.Command.Args, Timeout: rc.Command.timeout})
	}
	return reload.None{}, nil
}

// register puts the configured collectors into Consul. It is idempotent.
func (a *app) register(ctx context.Context) error {
	for _, jc := range a.cfg.Jobs {
		c := jc.Collectors
		if len(c.Register) == 0 {
			continue
		}
		client, err := a.consulClient()
		if err != nil {
			return err
		}
		for _, m := range c.Register {
			r := watch.Registration{Service: c.ConsulService, ID: m.ID, Address: m.Address, Port: m.Port,
				Tags: append(append([]string(nil), c.Tags...), m.Tags...), Meta: m.Meta, Weight: m.Weight, Check: c.Check.check}
			if err := watch.Register(ctx, client.Agent(), r); err != nil {
				return err
			}
			a.regMu.Lock()
			first := !a.registered[r.ServiceID()]
			if a.registered == nil {
				a.registered = map[string]bool{}
			}
			a.registered[r.ServiceID()] = true
			a.regMu.Unlock()
			if first {
				a.log.Info("registered collector in consul", "service", c.ConsulService, "id", r.ServiceID(), "address", r.HostPort())
			}
		}
	}
	return nil
}

// keepRegistered registers the configured collectors, retrying with
// backoff while Consul is unreachable, and registers them again every
// refresh interval, so that they come back after an agent lost its state.
func (a *app) keepRegistered(ctx context.Context) {
	const maxBackoff = 30 * time.Second
	backoff := time.Second
	for {
		wait := a.cfg.refresh
		if err := a.register(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			a.log.Error("registering collectors in consul failed; retrying", "in", backoff, "err", err)
			wait, backoff = backoff, min(2*backoff, maxBackoff)
		} else {
			backoff = time.Second
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// deregister removes what register added.
func (a *app) deregister() {
	a.regMu.Lock()
	ids := slices.Sorted(maps.Keys(a.registered))
	a.registered = nil
	a.regMu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, id := range ids {
		if err := watch.Deregister(ctx, a.consul.Agent(), id); err != nil {
			a.log.Warn("deregister failed", "id", id, "err", err)
			continue
		}
		a.log.Info("deregistered collector from consul", "id", id)
	}
}

// runSources runs every member source and hands each report to its jobs.
func (a *app) runSources(ctx context.Context, wg *sync.WaitGroup) {
	for _, s := range a.sources {
		ch := make(chan []watch.Member)
		wg.Go(func() { _ = s.src.Run(ctx, ch) })
		wg.Go(func() {
			for {
				select {
				case <-ctx.Done():
					return
				case ms := <-ch:
					for _, j := range s.jobs {
						j.setMembers(ms)
					}
				}
			}
		})
	}
}

// runTargets runs the providers that discover by themselves and pokes a
// job when its targets changed.
func (a *app) runTargets(ctx context.Context, wg *sync.WaitGroup) {
	changed := make(chan string)
	wg.Go(func() {
		if err := a.targets.Run(ctx, changed); err != nil {
			a.log.Error("target discovery stopped", "err", err)
		}
	})
	wg.Go(func() {
		for {
			select {
			case <-ctx.Done():
				return
			case name := <-changed:
				if j := a.jobByKey[name]; j != nil {
					j.poke("targets")
				}
			}
		}
	})
}

// once reshards every job one time (after the first member set), writes
// and reloads unless it is a dry run, and prints the summary.
func (a *app) once(ctx context.Context) error {
	if !a.flags.DryRun {
		if err := a.register(ctx); err != nil {
			return err
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	a.runSources(ctx, &wg)
	a.runTargets(ctx, &wg)
	var errs []error
	for _, j := range a.jobs {
		if err := j.waitMembers(ctx); err != nil {
			errs = append(errs, fmt.Errorf("job %q: no member set: %w", j.cfg.Name, err))
			continue
		}
		if err := j.reshard(ctx, "once"); err != nil {
			errs = append(errs, err)
		}
	}
	a.printSummary(a.out)
	return errors.Join(errs...)
}

// serve runs the daemon until ctx is done.
func (a *app) serve(ctx context.Context) error {
	defer a.deregister()
	var srv *http.Server
	if a.cfg.Listen != "" {
		var err error
		if srv, err = a.startHTTP(a.cfg.Listen); err != nil {
			return err
		}
	}
	var wg sync.WaitGroup
	wg.Go(func() { a.keepRegistered(ctx) })
	a.runSources(ctx, &wg)
	a.runTargets(ctx, &wg)
	for _, j := range a.jobs {
		wg.Go(func() { j.loop(ctx) })
	}
	a.log.Info("prome-shard running", "version", versionString(), "jobs", len(a.jobs), "listen", a.cfg.Listen, "self", a.flags.Member)
	<-ctx.Done()
	a.log.Info("shutting down")
	wg.Wait()
	if srv != nil {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}
	return nil
}
