package main

import (
	"fmt"
	"net"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery"
	"github.com/prometheus/prometheus/discovery/targetgroup"
	"go.yaml.in/yaml/v2"

	"github.com/promshard/promshard"
	"github.com/promshard/promshard/filesd"
	"github.com/promshard/promshard/shard"
	"github.com/promshard/promshard/targets/promsd"
	"github.com/promshard/promshard/watch"
)

// Config is the file given with -config; config.yaml beside this file
// documents every field. It is the parsed config: zero values mean the
// library's defaults, and values are checked here only as far as the
// library's constructors do not check them (those errors get the field's
// path in front).
type Config struct {
	Listen          string             `yaml:"listen"`
	RefreshInterval Duration           `yaml:"refresh_interval"`
	Settle          Duration           `yaml:"settle"`
	Consul          watch.ClientConfig `yaml:"consul"`
	Jobs            []JobConfig        `yaml:"jobs"`
}

// Duration is a duration in the config ("30s", "5m"). A text that is not a
// duration is reported by ParseConfig with the field's path.
type Duration struct {
	time.Duration
	text string
	bad  bool
}

// UnmarshalYAML records the text and whether it parses.
func (d *Duration) UnmarshalYAML(unmarshal func(any) error) error {
	if err := unmarshal(&d.text); err != nil {
		return err
	}
	v, err := model.ParseDuration(d.text)
	d.Duration, d.bad = time.Duration(v), err != nil
	return nil
}

// badDuration returns an error for the first Duration under v (a struct,
// slice or pointer, addressable) that did not parse, named by its path.
func badDuration(v reflect.Value, path string) error {
	switch v.Kind() {
	case reflect.Pointer:
		if !v.IsNil() {
			return badDuration(v.Elem(), path)
		}
	case reflect.Slice:
		for i := range v.Len() {
			if err := badDuration(v.Index(i), fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
	case reflect.Struct:
		if d, ok := v.Addr().Interface().(*Duration); ok && d.bad {
			return fmt.Errorf("%s: %q is not a duration (e.g. 30s, 5m)", path, d.text)
		}
		for i := range v.NumField() {
			tag, _, _ := strings.Cut(v.Type().Field(i).Tag.Get("yaml"), ",")
			if tag == "" || !v.Type().Field(i).IsExported() {
				continue
			}
			if err := badDuration(v.Field(i), strings.TrimPrefix(path+"."+tag, ".")); err != nil {
				return err
			}
		}
	}
	return nil
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
	ProbeInterval Duration       `yaml:"probe_interval"`
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
	Type                    string   `yaml:"type"`
	Path                    string   `yaml:"path"`
	Interval                Duration `yaml:"interval"`
	Timeout                 Duration `yaml:"timeout"`
	DeregisterCriticalAfter Duration `yaml:"deregister_critical_after"`
}

// TargetsConfig names exactly one target provider.
type TargetsConfig struct {
	Static []*targetgroup.Group `yaml:"static"`
	FileSD []string             `yaml:"file_sd"`
	HTTPSD *struct {
		URL         string   `yaml:"url"`
		BearerToken string   `yaml:"bearer_token"`
		Timeout     Duration `yaml:"timeout"`
	} `yaml:"http_sd"`
	PrometheusSD map[string]any `yaml:"prometheus_sd"`
	AllowEmpty   bool           `yaml:"allow_empty"`

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
	Method      string `yaml:"method"`
	Concurrency int    `yaml:"concurrency"`
	HTTP        struct {
		Path        string   `yaml:"path"`
		Scheme      string   `yaml:"scheme"`
		Timeout     Duration `yaml:"timeout"`
		Retries     int      `yaml:"retries"`
		Username    string   `yaml:"username"`
		Password    string   `yaml:"password"`
		BearerToken string   `yaml:"bearer_token"`
	} `yaml:"http"`
	Signal struct {
		PIDFile string `yaml:"pid_file"`
	} `yaml:"signal"`
	Command struct {
		Args    []string `yaml:"args"`
		Timeout Duration `yaml:"timeout"`
	} `yaml:"command"`
}

// LoadConfig reads and checks a config file.
func LoadConfig(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return ParseConfig(b)
}

// ParseConfig parses and checks a config. Unknown fields are errors.
func ParseConfig(b []byte) (*Config, error) {
	var c Config
	if err := yaml.UnmarshalStrict(b, &c); err != nil {
		return nil, err
	}
	if err := badDuration(reflect.ValueOf(&c).Elem(), ""); err != nil {
		return nil, err
	}
	return &c, c.check()
}

// oneOf checks an enumerated field; allowed[0] is its empty default.
func oneOf(path, v string, allowed ...string) error {
	for _, a := range allowed {
		if v == a {
			return nil
		}
	}
	return fmt.Errorf("%s: %q, want one of %s", path, v, strings.Join(allowed[1:], ", "))
}

func (c *Config) check() error {
	if d := c.RefreshInterval; d.text != "" && d.Duration < promshard.MinRefreshInterval {
		return fmt.Errorf("refresh_interval: %q, want at least %v", d.text, promshard.MinRefreshInterval)
	}
	if err := c.checkListen("listen"); err != nil {
		return err
	}
	if _, err := c.Consul.APIConfig(); err != nil {
		return fmt.Errorf("consul: %w", err)
	}
	if len(c.Jobs) == 0 {
		return fmt.Errorf("jobs: no job configured")
	}
	names := map[string]bool{}
	for i := range c.Jobs {
		j := &c.Jobs[i]
		if j.Name == "" || names[j.Name] {
			return fmt.Errorf("jobs[%d].name: %q is missing or used twice", i, j.Name)
		}
		names[j.Name] = true
		if err := j.check(fmt.Sprintf("jobs[%d] (%s)", i, j.Name)); err != nil {
			return err
		}
	}
	return nil
}

// checkListen checks the listen address, given in field (the config's
// listen or the -listen flag).
func (c *Config) checkListen(field string) error {
	if c.Listen == "" {
		return nil
	}
	_, port, err := net.SplitHostPort(c.Listen)
	if n, perr := strconv.Atoi(port); err != nil || perr != nil || n < 0 || n > 65535 {
		return fmt.Errorf("%s: %q is not host:port with a port 0-65535", field, c.Listen)
	}
	return nil
}

func (j *JobConfig) check(at string) error {
	var err error
	if j.ring, err = shard.ParseKind(j.Ring); err != nil {
		return fmt.Errorf("%s.ring: %q is not a ring kind (want one of %v)", at, j.Ring, shard.Kinds())
	}
	if j.Replicas == 0 {
		j.Replicas = 1
	}
	if j.Replicas < 1 {
		return fmt.Errorf("%s.replicas: %d, want at least 1", at, j.Replicas)
	}
	if j.ShardKey != "" && !model.LegacyValidation.IsValidLabelName(j.ShardKey) {
		return fmt.Errorf("%s.shard_key: %q is not a label name", at, j.ShardKey)
	}
	c := &j.Collectors
	if (c.ConsulService != "") == (len(c.Static) > 0) {
		return fmt.Errorf("%s.collectors: set exactly one of consul_service (collectors in Consul) and static (a fixed list)", at)
	}
	if len(c.Static) > 0 && len(c.Register) > 0 {
		return fmt.Errorf("%s.collectors.register: only with consul_service", at)
	}
	for i, m := range append(cloneMembers(c.Register), c.Static...) {
		if m.Address == "" || m.Port <= 0 || m.Port > 65535 {
			return fmt.Errorf("%s.collectors: collector %d (%q): needs address and a port 1-65535, got %q and %d", at, i, m.ID, m.Address, m.Port)
		}
	}
	if err := oneOf(at+".collectors.probe", c.Probe, "", "none", "http", "tcp"); err != nil {
		return err
	}
	if err := oneOf(at+".collectors.check.type", c.Check.Type, "", "http", "tcp", "ttl"); err != nil {
		return err
	}
	t, r := &j.Targets, &j.Reload
	if err := t.check(at + ".targets"); err != nil {
		return err
	}
	o := j.Output
	if o.Dir == "" && !o.HTTPSD {
		return fmt.Errorf("%s.output: set dir (file_sd files) or http_sd: true, or both", at)
	}
	if err := oneOf(at+".output.format", o.Format, "", "json", "yaml"); err != nil {
		return err
	}
	if o.Dir != "" {
		if _, err := filesd.NewDir(filesd.DirOptions{Dir: o.Dir, Template: o.File, Format: filesd.Format(o.Format)}); err != nil {
			return fmt.Errorf("%s.output.file: %w", at, err)
		}
	}
	if err := oneOf(at+".reload.method", r.Method, "", "none", "http", "signal", "command"); err != nil {
		return err
	}
	switch {
	case r.Method == "command" && len(r.Command.Args) == 0:
		return fmt.Errorf("%s.reload.command.args: empty", at)
	case r.Method == "signal" && r.Signal.PIDFile == "":
		return fmt.Errorf("%s.reload.signal.pid_file: missing", at)
	case r.Concurrency < 0:
		return fmt.Errorf("%s.reload.concurrency: %d, must not be negative", at, r.Concurrency)
	}
	return nil
}

// cloneMembers copies a member list so appending to it leaves the config alone.
func cloneMembers(ms []MemberConfig) []MemberConfig { return append([]MemberConfig(nil), ms...) }

func (t *TargetsConfig) check(at string) error {
	n := 0
	for _, set := range []bool{len(t.Static) > 0, len(t.FileSD) > 0, t.HTTPSD != nil, len(t.PrometheusSD) > 0} {
		if set {
			n++
		}
	}
	if n != 1 {
		return fmt.Errorf("%s: set exactly one provider of static, file_sd, http_sd and prometheus_sd (found %d)", at, n)
	}
	for i, g := range t.Static {
		if g == nil || len(g.Targets) == 0 {
			return fmt.Errorf("%s.static[%d].targets: empty", at, i)
		}
		g.Source = fmt.Sprintf("%s.static[%d]", at, i)
	}
	if h := t.HTTPSD; h != nil && !strings.HasPrefix(h.URL, "http://") && !strings.HasPrefix(h.URL, "https://") {
		return fmt.Errorf("%s.http_sd.url: %q, want an http(s) URL", at, h.URL)
	}
	if len(t.PrometheusSD) > 0 {
		b, err := yaml.Marshal(t.PrometheusSD)
		if err == nil {
			t.sd, err = promsd.ParseConfigs(b)
		}
		if err != nil {
			return fmt.Errorf("%s.prometheus_sd: %w", at, err)
		}
	}
	return nil
}
