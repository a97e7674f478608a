package promshard

import (
	"testing"
	"time"

	"go.yaml.in/yaml/v2"
)

func TestCheckDurations(t *testing.T) {
	type inner struct {
		Every Duration `yaml:"every"`
		Skip  Duration
	}
	type config struct {
		Timeout Duration  `yaml:"timeout"`
		Jobs    []inner   `yaml:"jobs"`
		Ptr     *inner    `yaml:"ptr"`
		Plain   time.Time `yaml:"plain"`
	}
	for in, want := range map[string]string{
		"timeout: 1d":                        "",
		"timeout: 5x":                        `timeout: "5x" is not a duration (e.g. 30s, 5m)`,
		"jobs: [{every: 1m}, {every: soon}]": `jobs[1].every: "soon" is not a duration (e.g. 30s, 5m)`,
		"ptr: {every: -1s}":                  `ptr.every: "-1s" is not a duration (e.g. 30s, 5m)`,
		"jobs: [{every: 2h30m}]\nptr: {}":    "",
	} {
		var c config
		if err := yaml.UnmarshalStrict([]byte(in), &c); err != nil {
			t.Fatal(err)
		}
		got := ""
		if err := CheckDurations(&c); err != nil {
			got = err.Error()
		}
		if got != want {
			t.Errorf("%q: got %q, want %q", in, got, want)
		}
	}
	var c config
	_ = yaml.Unmarshal([]byte("timeout: 1d\njobs: [{every: 90s}]"), &c)
	if c.Timeout.Duration != 24*time.Hour || c.Jobs[0].Every.Duration != 90*time.Second || c.Timeout.Text() != "1d" {
		t.Fatalf("%+v", c)
	}
}
