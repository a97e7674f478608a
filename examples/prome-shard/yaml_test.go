package main

import (
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v2"

	"github.com/promshard/promshard"
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

func TestBalanceFromYAML(t *testing.T) {
	var c struct {
		Jobs []JobConfig `yaml:"jobs"`
	}
	in := "jobs:\n- balance: {by: series, epsilon: 0.05, settle: 1h, interval: 30s, window: 2h, max_move_fraction: 0.2, isolate_above: 500000}\n" +
		"  capacity: {max_series: 2000000, overcommit: true}\n"
	if err := yaml.UnmarshalStrict([]byte(in), &c); err != nil {
		t.Fatal(err)
	}
	want := promshard.Balance{By: promshard.BalanceBySeries, Epsilon: 0.05, Settle: time.Hour, Interval: 30 * time.Second,
		Window: 2 * time.Hour, MaxMoveFraction: 0.2, Capacity: promshard.Capacity{MaxSeries: 2_000_000, Overcommit: true}, IsolateAbove: 500_000}
	if got := c.Jobs[0].balance(); got != want {
		t.Fatalf("got %+v", got)
	}
	for in, want := range map[string]string{
		"jobs: [{balance: {settle: soon}}]": `jobs[0].balance.settle: "soon" is not a duration`,
		"jobs: [{balance: {bye: series}}]":  "field bye not found",
	} {
		err := yaml.UnmarshalStrict([]byte(in), &c)
		if err == nil {
			err = CheckDurations(&c)
		}
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", in, err, want)
		}
	}
}
