package main

import (
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery"
	"go.yaml.in/yaml/v2"

	"github.com/promshard/promshard/filesd"
	"github.com/promshard/promshard/shard"
	"github.com/promshard/promshard/targets/promsd"
	"github.com/promshard/promshard/watch"
)

// Config is the file given with -config. See config.yaml beside this file
// for every field, documented.
type Config struct {
	Listen          string       `yaml:"listen"`
	RefreshInterval string       `yaml:"refresh_interval"`
	Settle          string       `yaml:"settle"`
	Consul          ConsulConfig `yaml:"consul"`
	Jobs            []JobConfig  `yaml:"jobs"`

	refresh, settle time.Duration
}

// ConsulConfig is how to reach Consul. Empty fields take the CONSUL_*
// environment variables, then Consul's defaults.
type ConsulConfig struct {
	Address    string    `yaml:"address"`
	Scheme     string    `yaml:"scheme"`
	Token      string    `yaml:"token"`
	TokenFile  string    `yaml:"token_file"`
	Datacenter string    `yaml:"datacenter"`
	TLS        TLSConfig `yaml:"tls"`
}

// TLSConfig is the TLS setup of the Consul connection.
type TLSConfig struct {
	CAFile             string `yaml:"ca_file"`
	CertFile           string `yaml:"cert_file"`
	KeyFile            string `yaml:"key_file"`
	ServerName         string `yaml:"server_name"`
	InsecureSkipVerify bool   `yaml:"insecure_skip_verify"`
}

// JobConfig is one job: its collectors, its targets, where they go.
type JobConfig struct {
	Name       string          `yaml:"name"`
	Collectors CollectorConfig `yaml:"collectors"`
	Ring       string          `yaml:"ring"`
	Replicas   int             `yaml:"replicas"`
	ShardKey   string          `yaml:"shard_key"`
	Targets    TargetsConfig   `yaml:"targets"`
	Output     OutputConfig    `yaml:"output"`
	Reload     ReloadConfig    `yaml:"reload"`

	ring shard.Kind
}

// CollectorConfig says where the job's collectors come from: a Consul
// service (optionally registered by promshard), or a static list.
type CollectorConfig struct {
	ConsulService string         `yaml:"consul_service"`
	Tags          []string       `yaml:"tags"`
	Register      []MemberConfig `yaml:"register"`
	Check         CheckConfig    `yaml:"check"`
	Static        []MemberConfig `yaml:"static"`
	Probe         string         `yaml:"probe"`
	ProbeInterval string         `yaml:"probe_interval"`

	probeInterval time.Duration
}

// MemberConfig is one collector's Prometheus.
type MemberConfig struct {
	ID      string            `yaml:"id"`
	Address string            `yaml:"address"`
	Port    int               `yaml:"port"`
	Weight  uint32            `yaml:"weight"`
	Tags    []string          `yaml:"tags"`
	Meta    map[string]string `yaml:"meta"`
}

// CheckConfig is the health check of registered collectors.
type CheckConfig struct {
	Type                    string `yaml:"type"`
	Path                    string `yaml:"path"`
	Interval                string `yaml:"interval"`
	Timeout                 string `yaml:"timeout"`
	DeregisterCriticalAfter string `yaml:"deregister_critical_after"`

	check watch.Check
}

// TargetsConfig names exactly one target provider.
type TargetsConfig struct {
	Static       []StaticGroup  `yaml:"static"`
	FileSD       []string       `yaml:"file_sd"`
	HTTPSD       *HTTPSDConfig  `yaml:"http_sd"`
	PrometheusSD map[string]any `yaml:"prometheus_sd"`
	AllowEmpty   bool           `yaml:"allow_empty"`

	sd discovery.Configs
}

// StaticGroup is a file_sd style group in the config.
type StaticGroup struct {
	Targets []string          `yaml:"targets"`
	Labels  map[string]string `yaml:"labels"`
}

// HTTPSDConfig is an http_sd endpoint to take targets from.
type HTTPSDConfig struct {
	URL         string `yaml:"url"`
	BearerToken string `yaml:"bearer_token"`
	Timeout     string `yaml:"timeout"`

	timeout time.Duration
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
	Method      string        `yaml:"method"`
	Concurrency int           `yaml:"concurrency"`
	HTTP        ReloadHTTP    `yaml:"http"`
	Signal      ReloadSignal  `yaml:"signal"`
	Command     ReloadCommand `yaml:"command"`
}

// ReloadHTTP configures POST /-/reload.
type ReloadHTTP struct {
	Path        string `yaml:"path"`
	Scheme      string `yaml:"scheme"`
	Timeout     string `yaml:"timeout"`
	Retries     int    `yaml:"retries"`
	Username    string `yaml:"username"`
	Password    string `yaml:"password"`
	BearerToken string `yaml:"bearer_token"`

	timeout time.Duration
}

// ReloadSignal configures a signal to a local Prometheus.
type ReloadSignal struct {
	PIDFile string `yaml:"pid_file"`
}

// ReloadCommand configures a user command per collector.
type ReloadCommand struct {
	Args    []string `yaml:"args"`
	Timeout string   `yaml:"timeout"`

	timeout time.Duration
}

// configError is a mistake in the config file: the binary exits with 2.
type configError struct{ err error }

func (e configError) Error() string { return "config: " + e.err.Error() }
func (e configError) Unwrap() error { return e.err }

func badf(format string, args ...any) error { return configError{fmt.Errorf(format, args...)} }

// LoadConfig reads and checks a config file.
func LoadConfig(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, configError{err}
	}
	return ParseConfig(b)
}

// ParseConfig parses and checks a config. Unknown fields are errors.
func ParseConfig(b []byte) (*Config, error) {
	var c Config
	if err := yaml.UnmarshalStrict(b, &c); err != nil {
		return nil, configError{err}
	}
	if err := c.check(); err != nil {
		return nil, err
	}
	return &c, nil
}

// duration parses an optional duration field named by path.
func duration(path, s string, def time.Duration) (time.Duration, error) {
	if s == "" {
		return def, nil
	}
	d, err := model.ParseDuration(s)
	if err != nil {
		return 0, badf("%s: %q is not a duration (e.g. 30s, 5m)", path, s)
	}
	return time.Duration(d), nil
}

func (c *Config) check() error {
	var err error
	if c.refresh, err = duration("refresh_interval", c.RefreshInterval, time.Minute); err != nil {
		return err
	}
	if c.refresh <= 0 {
		return badf("refresh_interval: %q must be positive", c.RefreshInterval)
	}
	if c.settle, err = duration("settle", c.Settle, 0); err != nil {
		return err
	}
	if c.Listen != "" {
		if _, _, err := net.SplitHostPort(c.Listen); err != nil {
			return badf("listen: %q is not host:port", c.Listen)
		}
	}
	if s := c.Consul.Scheme; s != "" && s != "http" && s != "https" {
		return badf("consul.scheme: %q, want http or https", s)
	}
	if len(c.Jobs) == 0 {
		return badf("jobs: no job configured")
	}
	names := map[string]bool{}
	for i := range c.Jobs {
		j := &c.Jobs[i]
		at := fmt.Sprintf("jobs[%d]", i)
		if j.Name == "" {
			return badf("%s.name: missing", at)
		}
		if names[j.Name] {
			return badf("%s.name: %q used twice", at, j.Name)
		}
		names[j.Name] = true
		at = fmt.Sprintf("jobs[%d] (%s)", i, j.Name)
		if err := j.check(at); err != nil {
			return err
		}
	}
	return nil
}

func (j *JobConfig) check(at string) error {
	var err error
	if j.ring, err = shard.ParseKind(j.Ring); err != nil {
		return badf("%s.ring: %q is not a ring kind (want one of %v)", at, j.Ring, shard.Kinds())
	}
	if j.Replicas == 0 {
		j.Replicas = 1
	}
	if j.Replicas < 1 {
		return badf("%s.replicas: %d, want at least 1", at, j.Replicas)
	}
	if j.ShardKey != "" && !model.LegacyValidation.IsValidLabelName(j.ShardKey) {
		return badf("%s.shard_key: %q is not a label name", at, j.ShardKey)
	}
	if err := j.Collectors.check(at + ".collectors"); err != nil {
		return err
	}
	if err := j.Targets.check(at+".targets", j.Name); err != nil {
		return err
	}
	if err := j.Output.check(at + ".output"); err != nil {
		return err
	}
	return j.Reload.check(at + ".reload")
}

func (c *CollectorConfig) check(at string) error {
	hasConsul, hasStatic := c.ConsulService != "", len(c.Static) > 0
	if hasConsul == hasStatic {
		return badf("%s: set exactly one of consul_service (collectors in Consul) and static (a fixed list); a job without a collector service cannot shard", at)
	}
	if hasStatic && len(c.Register) > 0 {
		return badf("%s.register: only with consul_service", at)
	}
	for i, m := range append(cloneMembers(c.Register), c.Static...) {
		if m.Address == "" || m.Port <= 0 || m.Port > 65535 {
			return badf("%s: collector %d (%q): needs address and a port 1-65535, got %q and %d", at, i, m.ID, m.Address, m.Port)
		}
	}
	switch c.Probe {
	case "", "none", "http", "tcp":
	default:
		return badf("%s.probe: %q, want none, http or tcp", at, c.Probe)
	}
	var err error
	if c.probeInterval, err = duration(at+".probe_interval", c.ProbeInterval, watch.DefaultProbeInterval); err != nil {
		return err
	}
	ch := &c.Check
	ch.check = watch.Check{Type: watch.CheckType(ch.Type), Path: ch.Path}
	switch ch.check.Type {
	case "", watch.CheckHTTP, watch.CheckTCP, watch.CheckTTL:
	default:
		return badf("%s.check.type: %q, want http, tcp or ttl", at, ch.Type)
	}
	if ch.check.Interval, err = duration(at+".check.interval", ch.Interval, 0); err != nil {
		return err
	}
	if ch.check.Timeout, err = duration(at+".check.timeout", ch.Timeout, 0); err != nil {
		return err
	}
	if ch.check.DeregisterCriticalAfter, err = duration(at+".check.deregister_critical_after", ch.DeregisterCriticalAfter, 0); err != nil {
		return err
	}
	return nil
}

// cloneMembers copies a member list so appending to it leaves the config alone.
func cloneMembers(ms []MemberConfig) []MemberConfig { return append([]MemberConfig(nil), ms...) }

func (t *TargetsConfig) check(at, job string) error {
	n := 0
	for _, set := range []bool{len(t.Static) > 0, len(t.FileSD) > 0, t.HTTPSD != nil, len(t.PrometheusSD) > 0} {
		if set {
			n++
		}
	}
	if n != 1 {
		return badf("%s: set exactly one provider of static, file_sd, http_sd and prometheus_sd (found %d)", at, n)
	}
	for i, g := range t.Static {
		if len(g.Targets) == 0 {
			return badf("%s.static[%d].targets: empty", at, i)
		}
		for ln := range g.Labels {
			if !model.LegacyValidation.IsValidLabelName(ln) {
				return badf("%s.static[%d].labels: %q is not a label name", at, i, ln)
			}
		}
	}
	if h := t.HTTPSD; h != nil {
		if !strings.HasPrefix(h.URL, "http://") && !strings.HasPrefix(h.URL, "https://") {
			return badf("%s.http_sd.url: %q, want an http(s) URL", at, h.URL)
		}
		var err error
		if h.timeout, err = duration(at+".http_sd.timeout", h.Timeout, 0); err != nil {
			return err
		}
	}
	if len(t.PrometheusSD) > 0 {
		b, err := yaml.Marshal(t.PrometheusSD)
		if err != nil {
			return badf("%s.prometheus_sd: %v", at, err)
		}
		if t.sd, err = promsd.ParseConfigs(b); err != nil {
			return badf("%s.prometheus_sd: %v", at, err)
		}
	}
	return nil
}

func (o *OutputConfig) check(at string) error {
	if o.Dir == "" && !o.HTTPSD {
		return badf("%s: set dir (file_sd files) or http_sd: true, or both", at)
	}
	switch o.Format {
	case "", "json", "yaml":
	default:
		return badf("%s.format: %q, want json or yaml", at, o.Format)
	}
	if o.Dir != "" {
		if _, err := filesd.NewDir(filesd.DirOptions{Dir: o.Dir, Template: o.File, Format: filesd.Format(o.Format)}); err != nil {
			return badf("%s.file: %v", at, err)
		}
	}
	return nil
}

func (r *ReloadConfig) check(at string) error {
	var err error
	switch r.Method {
	case "", "none", "signal":
	case "http":
		if r.HTTP.timeout, err = duration(at+".http.timeout", r.HTTP.Timeout, 0); err != nil {
			return err
		}
	case "command":
		if len(r.Command.Args) == 0 {
			return badf("%s.command.args: empty", at)
		}
		if r.Command.timeout, err = duration(at+".command.timeout", r.Command.Timeout, 0); err != nil {
			return err
		}
	default:
		return badf("%s.method: %q, want none, http, signal or command", at, r.Method)
	}
	if r.Method == "signal" && r.Signal.PIDFile == "" {
		return badf("%s.signal.pid_file: missing", at)
	}
	if r.Concurrency < 0 {
		return badf("%s.concurrency: %d, must not be negative", at, r.Concurrency)
	}
	return nil
}
