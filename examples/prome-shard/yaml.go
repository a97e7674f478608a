package main

import (
	"fmt"
	"reflect"
	"strings"
	"time"

	"github.com/prometheus/common/model"

	"github.com/promshard/promshard"
)

// Duration is a duration in a YAML config ("30s", "5m", "1d"), for a
// daemon's own config file. It keeps the text it was given, so that
// [CheckDurations] can name the field of one that is not a duration; its
// value is in the embedded time.Duration (zero when unset or bad).
type Duration struct {
	time.Duration
	text string
}

// UnmarshalYAML records the text and its value, if it is a duration.
func (d *Duration) UnmarshalYAML(unmarshal func(any) error) error {
	err := unmarshal(&d.text)
	v, _ := model.ParseDuration(d.text)
	d.Duration = time.Duration(v)
	return err
}

// Text is the duration as the config wrote it ("" when unset).
func (d Duration) Text() string { return d.text }

// CheckDurations returns an error for the first [Duration] in cfg (a
// pointer to a struct decoded from YAML) that is not a duration, naming it
// by its path of YAML keys: `audit.grace: "2x" is not a duration (e.g.
// 30s, 5m)`. Fields without a yaml tag are not visited.
func CheckDurations(cfg any) error {
	return badDuration(reflect.ValueOf(cfg), "")
}

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
		if d, ok := v.Interface().(Duration); ok {
			if _, err := model.ParseDuration(d.text); d.text == "" || err == nil {
				return nil
			}
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

// BalanceConfig is a job's balance: in the YAML a user writes, turned into
// a promshard.Balance.
type BalanceConfig struct {
	By              string   `yaml:"by"`
	Epsilon         float64  `yaml:"epsilon"`
	Settle          Duration `yaml:"settle"`
	Interval        Duration `yaml:"interval"`
	Window          Duration `yaml:"window"`
	MaxMoveFraction float64  `yaml:"max_move_fraction"`
	IsolateAbove    uint64   `yaml:"isolate_above"`
}

// CapacityConfig is a job's capacity.
type CapacityConfig struct {
	MaxSeries  uint64 `yaml:"max_series"`
	Overcommit bool   `yaml:"overcommit"`
}

// balance is the library's Balance of a job's config.
func (j *JobConfig) balance() promshard.Balance {
	b := j.Balance
	return promshard.Balance{By: promshard.BalanceBy(b.By), Epsilon: b.Epsilon, Settle: b.Settle.Duration,
		Interval: b.Interval.Duration, Window: b.Window.Duration, MaxMoveFraction: b.MaxMoveFraction,
		Capacity: promshard.Capacity{MaxSeries: j.Capacity.MaxSeries, Overcommit: j.Capacity.Overcommit}, IsolateAbove: b.IsolateAbove}
}
