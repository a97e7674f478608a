package filesd

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery/targetgroup"

	"github.com/promshard/promshard/internal/labels"
)

// Format is the encoding of a file_sd file.
type Format string

// The formats Prometheus' file_sd reads.
const (
	JSON Format = "json"
	YAML Format = "yaml"
)

// ErrInvalidLabel means a label name or value would make Prometheus reject
// the whole file.
var ErrInvalidLabel = errors.New("filesd: invalid label")

// FormatOf returns the format Prometheus infers from a file's extension:
// .json, or .yml / .yaml.
func FormatOf(path string) (Format, error) {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".json":
		return JSON, nil
	case ".yml", ".yaml":
		return YAML, nil
	}
	return "", fmt.Errorf("filesd: file %q: extension must be .json, .yml or .yaml (the ones file_sd reads)", path)
}

// entry is one element of a file_sd file.
type entry struct {
	Targets []string          `json:"targets" yaml:"targets"`
	Labels  map[string]string `json:"labels,omitempty" yaml:"labels,omitempty"`
}

// Marshal renders groups as a file_sd file in format f. Groups keep their
// order; a target whose label set holds more than __address__ is written in
// an entry of its own with the group's labels and its own (its own win, as
// in Prometheus). Nil or empty input gives an empty list. Label names are
// checked with the legacy rules every Prometheus version accepts.
func Marshal(groups []*targetgroup.Group, f Format) ([]byte, error) {
	entries, err := toEntries(groups)
	if err != nil {
		return nil, err
	}
	switch f {
	case JSON, "":
		b, err := json.MarshalIndent(entries, "", "  ")
		if err != nil {
			return nil, fmt.Errorf("filesd: encode JSON: %w", err)
		}
		return append(b, '\n'), nil
	case YAML:
		return marshalYAML(entries), nil
	}
	return nil, fmt.Errorf("filesd: format %q: want %q or %q", f, JSON, YAML)
}

func toEntries(groups []*targetgroup.Group) ([]entry, error) {
	entries := make([]entry, 0, len(groups))
	for gi, g := range groups {
		if g == nil || len(g.Targets) == 0 {
			continue
		}
		base, err := labelMap(g.Labels)
		if err != nil {
			return nil, fmt.Errorf("group %d (source %q): %w", gi, g.Source, err)
		}
		plain := entry{Labels: base}
		var own map[string]*entry // targets with labels of their own, by label text
		for ti, t := range g.Targets {
			addr, ok := t[model.AddressLabel]
			if !ok || addr == "" {
				return nil, fmt.Errorf("group %d (source %q) target %d (%v): %w: no __address__", gi, g.Source, ti, t, ErrInvalidLabel)
			}
			if !labels.ValidValue(string(addr)) {
				// JSON would write U+FFFD and YAML an escape read back as
				// another character: the collector would scrape another
				// address, so the target is refused, as Prometheus would.
				return nil, fmt.Errorf("group %d (source %q) target %d (%q): %w: __address__ is not valid UTF-8", gi, g.Source, ti, addr, ErrInvalidLabel)
			}
			if len(t) == 1 {
				plain.Targets = append(plain.Targets, string(addr))
				continue
			}
			rest := maps.Clone(t)
			delete(rest, model.AddressLabel)
			tl, err := labelMap(rest)
			if err != nil {
				return nil, fmt.Errorf("group %d (source %q) target %q: %w", gi, g.Source, addr, err)
			}
			merged := maps.Clone(base)
			if merged == nil {
				merged = map[string]string{}
			}
			maps.Copy(merged, tl)
			key := model.LabelSet(rest).String()
			if own == nil {
				own = map[string]*entry{}
			}
			e, ok := own[key]
			if !ok {
				e = &entry{Labels: merged}
				own[key] = e
			}
			e.Targets = append(e.Targets, string(addr))
		}
		if len(plain.Targets) > 0 {
			entries = append(entries, plain)
		}
		for _, k := range slices.Sorted(maps.Keys(own)) {
			entries = append(entries, *own[k])
		}
	}
	return entries, nil
}

// labelMap validates a label set and returns it as plain strings.
func labelMap(ls model.LabelSet) (map[string]string, error) {
	if len(ls) == 0 {
		return nil, nil
	}
	if reason := labels.Check(ls); reason != "" {
		return nil, fmt.Errorf("%w: %s", ErrInvalidLabel, reason)
	}
	out := make(map[string]string, len(ls))
	for n, v := range ls {
		out[string(n)] = string(v)
	}
	return out, nil
}

// marshalYAML writes entries as YAML by hand: the shape is fixed, and a
// general encoder is several times slower on large files. Every scalar is
// double-quoted with Go escapes, which YAML reads the same way, so no value
// ("true", "null", "a: b", a newline) changes meaning. Label keys are
// sorted.
func marshalYAML(entries []entry) []byte {
	if len(entries) == 0 {
		return []byte("[]\n")
	}
	n := 0
	for _, e := range entries {
		n += 16 + 24*len(e.Targets) + 32*len(e.Labels)
	}
	b := make([]byte, 0, n)
	for _, e := range entries {
		b = append(b, "- targets:\n"...)
		for _, t := range e.Targets {
			b = append(b, "  - "...)
			b = strconv.AppendQuote(b, t)
			b = append(b, '\n')
		}
		if len(e.Labels) == 0 {
			continue
		}
		b = append(b, "  labels:\n"...)
		for _, k := range slices.Sorted(maps.Keys(e.Labels)) {
			b = append(b, "    "...)
			b = strconv.AppendQuote(b, k)
			b = append(b, ": "...)
			b = strconv.AppendQuote(b, e.Labels[k])
			b = append(b, '\n')
		}
	}
	return b
}
