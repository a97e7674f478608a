package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	promcfg "github.com/prometheus/common/config"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery"
	"github.com/prometheus/prometheus/discovery/targetgroup"
	"github.com/prometheus/prometheus/model/relabel"
	"go.yaml.in/yaml/v2"

	"github.com/promshard/promshard"
	"github.com/promshard/promshard/elect"
	"github.com/promshard/promshard/filesd"
	"github.com/promshard/promshard/shard"
	"github.com/promshard/promshard/targets"
	"github.com/promshard/promshard/targets/promsd"
	"github.com/promshard/promshard/watch"
	memberssd "github.com/promshard/promshard/watch/promsd"
)

// Config is the parsed -config file, documented in config.yaml; zero is the default.
type Config struct {
	Listen          string   `yaml:"listen"`
	RefreshInterval Duration `yaml:"refresh_interval"`
	Settle          Duration `yaml:"settle"`
	Pprof           bool     `yaml:"pprof"` // /debug/pprof/ on listen
	// DeregisterOnStop deregisters the collectors of collectors.register
	// when the daemon stops; by default their registrations outlive it.
	DeregisterOnStop bool               `yaml:"deregister_on_stop"`
	Consul           watch.ClientConfig `yaml:"consul"`
	Audit            struct {           // what collectors scrape: on unless disabled
		Disabled    bool                     `yaml:"disabled"`
		Interval    Duration                 `yaml:"interval"`
		Grace       Duration                 `yaml:"grace"`
		RepairAfter Duration                 `yaml:"repair_after"`
		Concurrency int                      `yaml:"concurrency"`
		Scheme      string                   `yaml:"scheme"`
		Client      promcfg.HTTPClientConfig `yaml:",inline"`
	} `yaml:"audit"`
	Handoff struct {
		Mode    string   `yaml:"mode"` // overlap (the default) or off
		Timeout Duration `yaml:"timeout"`
	} `yaml:"handoff"`
	LeaderElection struct { // several copies of central mode: one leads
		Key, Name  string   // yaml: key, name
		SessionTTL Duration `yaml:"session_ttl"`
		CheckTTL   Duration `yaml:"check_ttl"`
		LockDelay  Duration `yaml:"lock_delay"`
	} `yaml:"leader_election"`
	Jobs []JobConfig       `yaml:"jobs"`
	lock elect.LockOptions // leader_election, checked
}

// JobConfig is one job: its collectors, its targets, where they go.
type JobConfig struct {
	Name       string          `yaml:"name"`
	Collectors CollectorConfig `yaml:"collectors"`
	Ring       shard.Kind      `yaml:"ring"`
	Replicas   int             `yaml:"replicas"`
	ShardKey   string          `yaml:"shard_key"`
	SpreadBy   string          `yaml:"spread_by"`
	// Relabel is applied to each target before it is placed (Prometheus'
	// relabel_configs, as the collectors' scrape job has them).
	Relabel         []*relabel.Config `yaml:"relabel_configs"`
	PreferZoneLabel string            `yaml:"prefer_zone_label"`
	PinFallback     string            `yaml:"pin_fallback"` // ring (the default) or none
	ScrapePool      string            `yaml:"scrape_pool"`
	Balance         BalanceConfig     `yaml:"balance"`
	Capacity        CapacityConfig    `yaml:"capacity"`
	Targets         TargetsConfig     `yaml:"targets"`
	Output          OutputConfig      `yaml:"output"`
	Reload          ReloadConfig      `yaml:"reload"`
	Quorum          QuorumConfig      `yaml:"quorum"`
	Guard           GuardConfig       `yaml:"partition_guard"`
}

// GuardConfig is the partition guard: more than share of the ring leaving
// at once holds the assignment until the collectors stay the same for
// settle; a collector that left and fails probe is dead, and its targets
// move max_move_fraction of the job's targets every step.
type GuardConfig struct {
	Share           float64  `yaml:"share"`
	Settle          Duration `yaml:"settle"`
	MaxMoveFraction float64  `yaml:"max_move_fraction"`
	Step            Duration `yaml:"step"`
	Probe           string   `yaml:"probe"` // http (the default: GET /-/ready), tcp or none
	ProbeInterval   Duration `yaml:"probe_interval"`
	ProbeTimeout    Duration `yaml:"probe_timeout"`
	Window          Duration `yaml:"window"` // leaves this close together count as at once
}

// QuorumConfig holds a cold start's first write until enough collectors
// are healthy.
type QuorumConfig struct {
	MinMembers int      `yaml:"min_members"`
	Wait       Duration `yaml:"wait"`
	OnTimeout  string   `yaml:"on_timeout"` // start (the default) or refuse
}

// CollectorConfig says where the job's collectors come from: a Consul
// service (optionally registered by promshard), or a static list.
type CollectorConfig struct {
	ConsulService string         `yaml:"consul_service"`
	Tags          []string       `yaml:"tags"`
	DrainTag      string         `yaml:"drain_tag"`
	Register      []watch.Member `yaml:"register"`
	Check         CheckConfig    `yaml:"check"`
	Static        []watch.Member `yaml:"static"`
	Probe         string         `yaml:"probe"`
	ProbeInterval Duration       `yaml:"probe_interval"`
	SD            *SDCollectors  `yaml:"sd"`
}

// SDCollectors finds the collectors with Prometheus service discovery: any
// *_sd_configs key of a scrape job, beside relabel_configs that set the
// reserved labels (see package watch/promsd) and an optional probe.
type SDCollectors struct {
	Relabel       []*relabel.Config `yaml:"relabel_configs"`
	Probe         string            `yaml:"probe"` // ready (GET /-/ready), healthy (GET /-/healthy), tcp, or none (the default)
	ProbeInterval Duration          `yaml:"probe_interval"`
	ProbeTimeout  Duration          `yaml:"probe_timeout"`
	Settle        Duration          `yaml:"settle"`
	Configs       map[string]any    `yaml:",inline"`
	sd            discovery.Configs
}

// probe is the probe the config names.
func (c *SDCollectors) probe() (watch.Probe, error) {
	switch c.Probe {
	case "ready":
		return watch.HTTPProbe(nil, "/-/ready"), nil
	case "healthy":
		return watch.HTTPProbe(nil, "/-/healthy"), nil
	}
	return watch.ProbeByName(c.Probe)
}

// CheckConfig is the health check of registered collectors.
type CheckConfig struct {
	Type                    string   `yaml:"type"`
	Path                    string   `yaml:"path"`
	Interval                Duration `yaml:"interval"`
	Timeout                 Duration `yaml:"timeout"`
	DeregisterCriticalAfter Duration `yaml:"deregister_critical_after"`
}

// AuditConfig is the audit of what collectors scrape: on unless disabled.
type AuditConfig struct {
	Disabled    bool                     `yaml:"disabled"`
	Interval    Duration                 `yaml:"interval"`
	Grace       Duration                 `yaml:"grace"`
	RepairAfter Duration                 `yaml:"repair_after"`
	Concurrency int                      `yaml:"concurrency"`
	Scheme      string                   `yaml:"scheme"`
	Client      promcfg.HTTPClientConfig `yaml:",inline"`
}

// HTTPSDConfig is a target provider that reads an http_sd endpoint.
type HTTPSDConfig struct {
	URL     string                   `yaml:"url"`
	Timeout Duration                 `yaml:"timeout"`
	Client  promcfg.HTTPClientConfig `yaml:",inline"` // auth and TLS as in a Prometheus scrape config
}

// ReloadHTTPConfig is how collectors are reloaded over HTTP.
type ReloadHTTPConfig struct {
	Path    string                   `yaml:"path"`
	Scheme  string                   `yaml:"scheme"`
	Timeout Duration                 `yaml:"timeout"`
	Retries int                      `yaml:"retries"`
	Client  promcfg.HTTPClientConfig `yaml:",inline"`
}

// Each HTTP client starts from Prometheus' defaults (it follows redirects,
// HTTP/2 on), as in a Prometheus scrape config, then reads its fields.

// UnmarshalYAML reads a job over the defaults of its HTTP clients.
func (j *JobConfig) UnmarshalYAML(unmarshal func(any) error) error {
	type plain JobConfig
	*j = JobConfig{Reload: ReloadConfig{HTTP: ReloadHTTPConfig{Client: promcfg.DefaultHTTPClientConfig}}}
	return unmarshal((*plain)(j))
}

// UnmarshalYAML reads an audit block over the defaults.
func (c *AuditConfig) UnmarshalYAML(unmarshal func(any) error) error {
	type plain AuditConfig
	*c = AuditConfig{Client: promcfg.DefaultHTTPClientConfig}
	return unmarshal((*plain)(c))
}

// UnmarshalYAML reads an http_sd block over the defaults.
func (c *HTTPSDConfig) UnmarshalYAML(unmarshal func(any) error) error {
	type plain HTTPSDConfig
	*c = HTTPSDConfig{Client: promcfg.DefaultHTTPClientConfig}
	return unmarshal((*plain)(c))
}

// UnmarshalYAML reads a reload.http block over the defaults.
func (c *ReloadHTTPConfig) UnmarshalYAML(unmarshal func(any) error) error {
	type plain ReloadHTTPConfig
	*c = ReloadHTTPConfig{Client: promcfg.DefaultHTTPClientConfig}
	return unmarshal((*plain)(c))
}

// TargetsConfig names exactly one target provider.
type TargetsConfig struct {
	Static       []*targetgroup.Group `yaml:"static"`
	FileSD       []string             `yaml:"file_sd"`
	HTTPSD       *HTTPSDConfig        `yaml:"http_sd"`
	PrometheusSD map[string]any       `yaml:"prometheus_sd"`
	AllowEmpty   bool                 `yaml:"allow_empty"`

	sd discovery.Configs
}

// OutputConfig is where each collector's targets go.
type OutputConfig struct {
	Dir    string `yaml:"dir"`
	File   string `yaml:"file"`
	Format string `yaml:"format"`
	HTTPSD bool   `yaml:"http_sd"`
}

// ReloadConfig is how collectors learn of new targets.
type ReloadConfig struct {
	Method      string           `yaml:"method"`
	Concurrency int              `yaml:"concurrency"`
	HTTP        ReloadHTTPConfig `yaml:"http"`
	Signal      struct {
		PIDFile string `yaml:"pid_file"`
	} `yaml:"signal"`
	Command struct {
		Args    []string `yaml:"args"`
		Timeout Duration `yaml:"timeout"`
	} `yaml:"command"`
}

// LoadConfig reads, parses and checks a config file. Unknown fields are
// errors.
func LoadConfig(path string) (*Config, error) {
	c := Config{Audit: AuditConfig{Client: promcfg.DefaultHTTPClientConfig}}
	b, err := os.ReadFile(path)
	if err == nil {
		err = yaml.UnmarshalStrict(b, &c)
	}
	if err == nil {
		err = CheckDurations(&c)
	}
	if err == nil {
		err = c.check()
	}
	return &c, err
}

func (c *Config) check() error {
	_, cerr := c.Consul.APIConfig()
	le := c.LeaderElection
	c.lock = elect.LockOptions{Key: le.Key, Name: le.Name, SessionTTL: le.SessionTTL.Duration, CheckTTL: le.CheckTTL.Duration,
		LockDelay: le.LockDelay.Duration}
	switch lerr, d := c.checkListen("listen"), c.RefreshInterval; {
	case d.Text() != "" && d.Duration < promshard.MinRefreshInterval:
		return fmt.Errorf("refresh_interval: %q, want at least %v", d.Text(), promshard.MinRefreshInterval)
	case lerr != nil:
		return lerr
	case cerr != nil:
		return fmt.Errorf("consul: %w", cerr)
	case c.lock.Key != "" && c.lock.Validate() != nil:
		return fmt.Errorf("leader_election: %w", c.lock.Validate())
	case c.Handoff.Mode != "" && c.Handoff.Mode != "overlap" && c.Handoff.Mode != "off":
		return fmt.Errorf("handoff.mode: %q, want overlap or off", c.Handoff.Mode)
	case len(c.Jobs) == 0:
		return fmt.Errorf("jobs: no job configured")
	}
	seen := map[string]string{} // "name N" and "dir D" → the job that has it
	if sc := c.Audit.Scheme; sc != "" && sc != "http" && sc != "https" {
		return fmt.Errorf("audit.scheme: %q, want http or https", sc)
	}
	for i := range c.Jobs {
		j := &c.Jobs[i]
		if j.Name == "" || seen["name "+j.Name] != "" {
			return fmt.Errorf("jobs[%d].name: %q is missing or used twice", i, j.Name)
		}
		at := fmt.Sprintf("jobs[%d] (%s)", i, j.Name)
		dir := canonicalDir(j.Output.Dir)
		if other := seen["dir "+dir]; other != "" && j.Output.Dir != "" {
			return fmt.Errorf("%s.output.dir: %q is also job %q's: each job needs a directory of its own", at, j.Output.Dir, other)
		}
		seen["name "+j.Name], seen["dir "+dir] = j.Name, j.Name
		if err := j.check(at); err != nil {
			return err
		}
	}
	return nil
}

// canonicalDir is dir absolute, clean, with the symbolic links of its
// nearest existing ancestor resolved: two spellings of one directory give
// the same string.
func canonicalDir(dir string) string {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return filepath.Clean(dir)
	}
	rest := ""
	for p := abs; ; p = filepath.Dir(p) {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			return filepath.Join(real, rest)
		}
		if p == filepath.Dir(p) {
			return abs
		}
		rest = filepath.Join(filepath.Base(p), rest)
	}
}

// checkListen checks the listen address, named field (listen or -listen).
func (c *Config) checkListen(field string) error {
	_, port, err := net.SplitHostPort(c.Listen)
	if n, perr := strconv.Atoi(port); c.Listen != "" && (err != nil || perr != nil || n < 0 || n > 65535) {
		return fmt.Errorf("%s: %q is not host:port with a port 0-65535", field, c.Listen)
	}
	return nil
}

// checkRelabel checks the relabel_configs under at.
func checkRelabel(at string, rs []*relabel.Config) error {
	for i, rc := range rs {
		if rc == nil {
			return fmt.Errorf("%s.relabel_configs[%d]: empty", at, i)
		}
		if err := rc.Validate(model.UTF8Validation); err != nil {
			return fmt.Errorf("%s.relabel_configs[%d]: %w", at, i, err)
		}
	}
	return nil
}

// checkSD parses collectors.sd: its service discovery configs, its
// relabelling and its probe.
func (c *CollectorConfig) checkSD(at string) error {
	sd := c.SD
	if sd == nil {
		return nil
	}
	at += ".collectors.sd"
	if _, err := sd.probe(); err != nil {
		return fmt.Errorf("%s.probe: %q, want ready, healthy, tcp or none", at, sd.Probe)
	}
	if err := checkRelabel(at, sd.Relabel); err != nil {
		return err
	}
	var err error
	if sd.sd, err = parseSD(sd.Configs, memberssd.ParseConfigs); err != nil {
		return fmt.Errorf("%s: %w", at, err)
	}
	return nil
}

// parseSD reads the *_sd_configs keys of v with parse; an error for a
// mechanism left out of this build says which it has.
func parseSD(v map[string]any, parse func([]byte) (discovery.Configs, error)) (discovery.Configs, error) {
	b, err := yaml.Marshal(v)
	if err != nil {
		return nil, err
	}
	cs, err := parse(b)
	if errors.Is(err, memberssd.ErrNotCompiled) || errors.Is(err, promsd.ErrNotCompiled) {
		err = fmt.Errorf("%w; %s", err, sdBuild())
	}
	return cs, err
}

func (j *JobConfig) check(at string) error {
	c, t, o, r := &j.Collectors, &j.Targets, &j.Output, &j.Reload
	for _, e := range []struct {
		path, v string
		allowed []string
	}{
		{".collectors.check.type", c.Check.Type, []string{"http", "tcp"}}, // a ttl check needs the collector itself to pass it
		{".output.format", o.Format, []string{"json", "yaml"}},
		{".reload.method", r.Method, []string{"none", "http", "signal", "command"}},
		{".quorum.on_timeout", j.Quorum.OnTimeout, []string{"start", "refuse"}},
		{".partition_guard.probe", j.Guard.Probe, []string{"http", "tcp", "none"}},
		{".pin_fallback", j.PinFallback, []string{"ring", "none"}},
	} {
		if e.v != "" && !slices.Contains(e.allowed, e.v) {
			return fmt.Errorf("%s%s: %q, want one of %s", at, e.path, e.v, strings.Join(e.allowed, ", "))
		}
	}
	if _, err := shard.ParseKind(string(j.Ring)); err != nil {
		return fmt.Errorf("%s.ring: %q, want one of %v", at, j.Ring, shard.Kinds())
	}
	for i, g := range t.Static { // a bad label is a mistake of the config, found at start
		if g != nil && g.Source == "" {
			g.Source = strconv.Itoa(i)
		}
		if _, bad := targets.Validate(j.Name, []*targetgroup.Group{g}); len(bad) > 0 {
			return fmt.Errorf("%s.targets.static[%d]: %s", at, i, bad[0].Reason)
		}
	}
	if err := c.checkSD(at); err != nil {
		return err
	}
	if err := checkRelabel(at, j.Relabel); err != nil {
		return err
	}
	if j.PreferZoneLabel != "" && j.SpreadBy == "" {
		return fmt.Errorf("%s.prefer_zone_label: %q needs spread_by: a collector's zone is its spread_by meta", at, j.PreferZoneLabel)
	}
	set := []bool{len(t.Static) > 0, len(t.FileSD) > 0, t.HTTPSD != nil, len(t.PrometheusSD) > 0}
	hasTargets := len(slices.DeleteFunc(set, func(b bool) bool { return !b })) // providers set
	switch {
	case j.Replicas < 0:
		return fmt.Errorf("%s.replicas: %d, want at least 1", at, j.Replicas)
	case len(slices.DeleteFunc([]bool{c.ConsulService != "", len(c.Static) > 0, c.SD != nil}, func(b bool) bool { return !b })) != 1:
		return fmt.Errorf("%s.collectors: set exactly one of consul_service (collectors in Consul), static (a fixed list) and sd (Prometheus service discovery)", at)
	case c.ConsulService == "" && len(c.Register) > 0:
		return fmt.Errorf("%s.collectors.register: only with consul_service", at)
	case hasTargets != 1:
		return fmt.Errorf("%s.targets: set exactly one provider of static, file_sd, http_sd and prometheus_sd (found %d)", at, hasTargets)
	case o.Dir == "" && !o.HTTPSD:
		return fmt.Errorf("%s.output: set dir (file_sd files) or http_sd: true, or both", at)
	}
	j.Replicas = max(j.Replicas, 1)
	for i, m := range append(slices.Clone(c.Register), c.Static...) {
		if m.Address == "" || m.Port <= 0 || m.Port > 65535 {
			return fmt.Errorf("%s.collectors: collector %d (%q): needs address and a port 1-65535, got %q and %d", at, i, m.ID, m.Address, m.Port)
		}
	}
	for i, g := range t.Static {
		if g == nil || len(g.Targets) == 0 {
			return fmt.Errorf("%s.targets.static[%d].targets: empty", at, i)
		}
		g.Source = fmt.Sprintf("%s.static[%d]", at, i)
	}
	if len(t.PrometheusSD) > 0 {
		var err error
		if t.sd, err = parseSD(t.PrometheusSD, promsd.ParseConfigs); err != nil {
			return fmt.Errorf("%s.targets.prometheus_sd: %w", at, err)
		}
	}
	if o.Dir != "" {
		if _, err := filesd.NewDir(filesd.DirOptions{Dir: o.Dir, Template: o.File, Format: filesd.Format(o.Format)}); err != nil {
			return fmt.Errorf("%s.output.file: %w", at, err)
		}
	}
	return nil
}
