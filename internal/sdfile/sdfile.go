// Package sdfile is the module's one file_sd codec: the formats and their
// extensions, the reader (what targets takes in) and the writer (what filesd
// puts out), so that both sides agree on what a file_sd file is.
package sdfile

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/cespare/xxhash/v2"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery/targetgroup"
	"go.yaml.in/yaml/v2"

	"github.com/promshard/promshard/internal/labels"
	"github.com/promshard/promshard/internal/tstore"
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
var ErrInvalidLabel = errors.New("invalid label")

// FormatOf returns the format Prometheus infers from a file's extension:
// .json, or .yml / .yaml.
func FormatOf(path string) (Format, error) {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".json":
		return JSON, nil
	case ".yml", ".yaml":
		return YAML, nil
	}
	return "", fmt.Errorf("file %q: extension must be .json, .yml or .yaml (the ones file_sd reads)", path)
}

// entry is one element of a file_sd file.
type entry struct {
	Targets []string       `json:"targets" yaml:"targets"`
	Labels  model.LabelSet `json:"labels,omitempty" yaml:"labels,omitempty"` // shared with the input: read only
}

// Marshal renders groups as a file_sd file in format f. Groups keep their
// order; a target whose label set holds more than __address__ is written in
// an entry of its own with the group's labels and its own (its own win, as
// in Prometheus). Nil or empty input gives an empty list. Label names are
// checked with the legacy rules every Prometheus version accepts.
func Marshal(groups []*targetgroup.Group, f Format) ([]byte, error) {
	return MarshalCompact(tstore.FromAll(groups), f)
}

// MarshalCompact is Marshal over groups in the module's compact form.
func MarshalCompact(groups []*tstore.Group, f Format) ([]byte, error) {
	entries, err := toEntries(groups)
	if err != nil {
		return nil, err
	}
	switch f {
	case JSON, "":
		return marshalJSON(entries), nil
	case YAML:
		return marshalYAML(entries), nil
	}
	return nil, fmt.Errorf("format %q: want %q or %q", f, JSON, YAML)
}

func toEntries(groups []*tstore.Group) ([]entry, error) {
	entries := make([]entry, 0, len(groups))
	for gi, g := range groups {
		var err error
		if entries, err = groupEntries(entries, gi, g); err != nil {
			return nil, err
		}
	}
	return entries, nil
}

// groupEntries appends the entries of group gi: its targets without labels
// of their own, then one entry per set of own labels.
func groupEntries(entries []entry, gi int, g *tstore.Group) ([]entry, error) {
	if g == nil || len(g.Targets) == 0 {
		return entries, nil
	}
	base, err := labelMap(stripReserved(g.Labels))
	if err != nil {
		return nil, fmt.Errorf("group %d (source %q): %w", gi, g.Source, err)
	}
	plain := entry{Labels: base}
	var own map[string]*entry // targets with labels of their own, by label text
	for ti, a := range g.Targets {
		addr, t := model.LabelValue(a), g.OwnOf(ti)
		if t != nil {
			addr = t[model.AddressLabel]
		}
		if addr == "" {
			return nil, fmt.Errorf("group %d (source %q) target %d (%v): %w: no __address__", gi, g.Source, ti, t, ErrInvalidLabel)
		}
		if !labels.ValidValue(string(addr)) {
			// JSON would write U+FFFD and YAML an escape read back as
			// another character: the collector would scrape another
			// address, so the target is refused, as Prometheus would.
			return nil, fmt.Errorf("group %d (source %q) target %d (%q): %w: __address__ is not valid UTF-8", gi, g.Source, ti, addr, ErrInvalidLabel)
		}
		if t == nil || len(t) == 1 {
			if plain.Targets == nil {
				plain.Targets = make([]string, 0, len(g.Targets)-ti)
			}
			plain.Targets = append(plain.Targets, string(addr))
			continue
		}
		rest := maps.Clone(t)
		delete(rest, model.AddressLabel)
		maps.DeleteFunc(rest, func(k model.LabelName, _ model.LabelValue) bool { return reserved(k) })
		if len(rest) == 0 {
			plain.Targets = append(plain.Targets, string(addr))
			continue
		}
		tl, err := labelMap(rest)
		if err != nil {
			return nil, fmt.Errorf("group %d (source %q) target %q: %w", gi, g.Source, addr, err)
		}
		merged := maps.Clone(base)
		if merged == nil {
			merged = model.LabelSet{}
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
	return entries, nil
}

// ReservedPrefix starts the names of the labels that tell promshard how to
// place a target (__promshard_every__, __promshard_pin__, …). They are never
// written: a collector does not see them.
const ReservedPrefix = "__promshard_"

// reserved reports whether a label is one of promshard's own.
func reserved(k model.LabelName) bool { return strings.HasPrefix(string(k), ReservedPrefix) }

// stripReserved is ls without promshard's own labels: ls itself when it has
// none.
func stripReserved(ls model.LabelSet) model.LabelSet {
	for k := range ls {
		if reserved(k) {
			out := maps.Clone(ls)
			maps.DeleteFunc(out, func(k model.LabelName, _ model.LabelValue) bool { return reserved(k) })
			return out
		}
	}
	return ls
}

// labelMap validates a label set and returns it (nil when empty); it is
// shared, not copied.
func labelMap(ls model.LabelSet) (model.LabelSet, error) {
	if len(ls) == 0 {
		return nil, nil
	}
	if reason := labels.Check(ls); reason != "" {
		return nil, fmt.Errorf("%w: %s", ErrInvalidLabel, reason)
	}
	return ls, nil
}

// marshalJSON writes entries as json.MarshalIndent(entries, "", "  ")
// does, byte for byte, and a newline, by hand: a file of 100k targets is
// written several times over in a big reshard, and reflection dominated
// it. Strings of plain ASCII are written as they are; any other string
// goes through encoding/json, so that every escape is its own.
func marshalJSON(entries []entry) []byte {
	if len(entries) == 0 {
		return []byte("[]\n")
	}
	b := buffer(entries, 48, 40)
	b = append(b, "[\n"...)
	b = appendJSONEntries(b, entries)
	return append(b, "\n]\n"...)
}

// appendJSONEntries appends entries as the elements of the array that
// marshalJSON writes, separated by ",\n", without the brackets.
func appendJSONEntries(b []byte, entries []entry) []byte {
	for i, e := range entries {
		if i > 0 {
			b = append(b, ",\n"...)
		}
		b = append(b, "  {\n    \"targets\": "...)
		switch {
		case e.Targets == nil: // not written: toEntries gives every entry a target
			b = append(b, "null"...)
		case len(e.Targets) == 0:
			b = append(b, "[]"...)
		default:
			b = append(b, "[\n"...)
			for j, t := range e.Targets {
				if j > 0 {
					b = append(b, ",\n"...)
				}
				b = append(b, "      "...)
				b = appendJSONString(b, t)
			}
			b = append(b, "\n    ]"...)
		}
		if len(e.Labels) > 0 {
			b = append(b, ",\n    \"labels\": {\n"...)
			for j, k := range slices.Sorted(maps.Keys(e.Labels)) {
				if j > 0 {
					b = append(b, ",\n"...)
				}
				b = append(b, "      "...)
				b = appendJSONString(b, string(k))
				b = append(b, ": "...)
				b = appendJSONString(b, string(e.Labels[k]))
			}
			b = append(b, "\n    }"...)
		}
		b = append(b, "\n  }"...)
	}
	return b
}

// buffer is an empty buffer about the size of entries written with
// perEntry bytes of frame per entry and perLabel per label (24 per target).
func buffer(entries []entry, perEntry, perLabel int) []byte {
	n := 4
	for _, e := range entries {
		n += perEntry + 24*len(e.Targets) + perLabel*len(e.Labels)
	}
	return make([]byte, 0, n)
}

// appendJSONString appends s as encoding/json writes it.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s) // a string always encodes
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
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
	return appendYAMLEntries(buffer(entries, 16, 32), entries)
}

// appendYAMLEntries appends entries as the items of the list that
// marshalYAML writes.
func appendYAMLEntries(b []byte, entries []entry) []byte {
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
			b = strconv.AppendQuote(b, string(k))
			b = append(b, ": "...)
			b = strconv.AppendQuote(b, string(e.Labels[k]))
			b = append(b, '\n')
		}
	}
	return b
}

// Parse reads file_sd content in format f as Prometheus does: unknown
// fields and empty addresses are errors, and every group gets a label set.
func Parse(b []byte, f Format) ([]*targetgroup.Group, error) {
	var gs []*targetgroup.Group
	if f == JSON {
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&gs); err != nil {
			return nil, fmt.Errorf("malformed JSON: %w", err)
		}
	} else if err := yaml.UnmarshalStrict(b, &gs); err != nil {
		return nil, fmt.Errorf("malformed YAML: %w", err)
	}
	for i, g := range gs {
		if g == nil {
			continue
		}
		if g.Labels == nil {
			g.Labels = model.LabelSet{}
		}
		for _, t := range g.Targets {
			if t[model.AddressLabel] == "" {
				return nil, fmt.Errorf("group %d: a target has an empty address", i)
			}
		}
	}
	return gs, nil
}

// Known is what a parse takes from groups in hand instead of making it: a
// file read back to be compared with what is about to be written (its
// collector's next groups) shares their address strings and labels maps,
// and keeps none of its own text.
type Known struct {
	// Addr gives the string to hold for an address, or "" for a new one.
	Addr func(addr string) string
	// Labels gives the labels maps whose [labels.CheckHash] is hash.
	Labels func(hash uint64) []model.LabelSet
}

// labels is the labels map of a group read with the given pairs (names
// once each): one known with the same labels, else a new one, of strings
// carved from the group's text unless known is set.
func (k *Known) labels(pairs [][2]string) model.LabelSet {
	if k != nil && k.Labels != nil {
		var h uint64
		for _, p := range pairs {
			h += labels.PairHash(p[0], p[1])
		}
		for _, c := range k.Labels(h) {
			if len(c) == len(pairs) && !slices.ContainsFunc(pairs, func(p [2]string) bool {
				v, ok := c[model.LabelName(p[0])]
				return !ok || string(v) != p[1]
			}) {
				return c
			}
		}
	}
	ls := make(model.LabelSet, len(pairs))
	for _, p := range pairs {
		name, v := p[0], p[1]
		if k != nil { // the text is not kept for the labels of a group read back
			name, v = strings.Clone(name), strings.Clone(v)
		}
		ls[model.LabelName(name)] = model.LabelValue(v)
	}
	return ls
}

// ParseCompact is Parse into the module's compact form, taking what known
// (when not nil) has instead of making it. A JSON text in the common form
// is read by hand, as ParseReusing reads it; any other text, and YAML, is
// Parse's.
func ParseCompact(b []byte, f Format, known *Known) ([]*tstore.Group, error) {
	if f == JSON {
		if gs, _, ok := parseReusing(b, nil, nil, known); ok {
			return gs, nil
		}
	}
	gs, err := Parse(b, f)
	if err != nil {
		return nil, err
	}
	return tstore.FromAll(gs), nil
}

// Decode reads a JSON list of groups (an http_sd answer) group by group, as
// Prometheus does (unknown fields and empty addresses are errors), without
// holding the raw answer: a target that repeats one already read with the
// same labels is dropped as it comes, and more than maxTargets distinct
// targets is an error.
func Decode(r io.Reader, maxTargets int) ([]*tstore.Group, error) {
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	tok, err := dec.Token()
	if err != nil {
		return nil, fmt.Errorf("malformed JSON: %w", err)
	}
	if tok == nil {
		return nil, nil // null: no groups
	}
	if d, ok := tok.(json.Delim); !ok || d != '[' {
		return nil, fmt.Errorf("malformed JSON: want a list of target groups, got %v", tok)
	}
	type key struct{ labels, addr string }
	seen := map[key]struct{}{}
	var out []*tstore.Group
	for i := 0; dec.More(); i++ {
		var g struct {
			Targets []string       `json:"targets"`
			Labels  model.LabelSet `json:"labels"`
		}
		if err := dec.Decode(&g); err != nil {
			return nil, fmt.Errorf("malformed JSON: group %d: %w", i, err)
		}
		if g.Labels == nil {
			g.Labels = model.LabelSet{}
		}
		tg := &tstore.Group{Labels: g.Labels, Targets: make([]string, 0, len(g.Targets))}
		ls := tg.Labels.String()
		for _, a := range g.Targets {
			if a == "" {
				return nil, fmt.Errorf("group %d: a target has an empty address", i)
			}
			if _, dup := seen[key{ls, a}]; dup {
				continue
			}
			if len(seen) == maxTargets {
				return nil, fmt.Errorf("more than %d distinct targets (HTTPSDOptions.MaxTargets)", maxTargets)
			}
			seen[key{ls, a}] = struct{}{}
			tg.Targets = append(tg.Targets, a)
		}
		out = append(out, tg)
	}
	if _, err := dec.Token(); err != nil {
		return nil, fmt.Errorf("malformed JSON: %w", err)
	}
	return out, nil
}

// Parsed is what [ParseReusing] keeps of one parse of a JSON file_sd file
// for the next: each group's raw text, by hash, with the group parsed from
// it. The zero value (or nil) holds nothing.
type Parsed struct {
	groups map[uint64]parsedGroup
}

// parsedGroup is a group and the length of the text it was parsed from
// (checked with the hash).
type parsedGroup struct {
	g *tstore.Group
	n int
}

// ParseReusing is Parse for JSON that gives back the very groups of prev
// (the same *Group, its Labels and its target label sets) for every group
// whose text is byte for byte what it was when prev was parsed: a file of a
// thousand groups where one changed parses one group and makes the label
// sets of one group, not a million. It returns the groups, in file order
// (nil for a null entry, as Parse), and what the next call needs; prev is
// not modified. setSource, when not nil, gives group i its Source: a group
// given back whose Source is not that is a new Group sharing its Labels
// and Targets, so that a group handed out before is never changed. Errors,
// and YAML, are Parse's: on any error the whole text is parsed again by
// Parse, for its message.
func ParseReusing(b []byte, prev *Parsed, setSource func(i int) string) ([]*tstore.Group, *Parsed, error) {
	gs, next, ok := parseReusing(b, prev, setSource, nil)
	if ok {
		return gs, next, nil
	}
	tgs, err := Parse(b, JSON)
	if err != nil {
		return nil, nil, err
	}
	gs = tstore.FromAll(tgs)
	for i, g := range gs { // a text the fast path does not take (a top-level null): nothing to remember
		if g != nil && setSource != nil {
			g.Source = setSource(i)
		}
	}
	return gs, &Parsed{}, nil
}

// parseReusing is ParseReusing's fast path; ok is false when the text is
// anything but a list of well-formed groups.
func parseReusing(b []byte, prev *Parsed, setSource func(i int) string, known *Known) (gs []*tstore.Group, next *Parsed, ok bool) {
	dec := json.NewDecoder(bytes.NewReader(b))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('[') {
		return nil, nil, false
	}
	var old map[uint64]parsedGroup
	if prev != nil {
		old = prev.groups
	}
	next = &Parsed{groups: make(map[uint64]parsedGroup, len(old))}
	gs = make([]*tstore.Group, 0, len(old)) // "[]" is an empty list, as Parse reads it
	var raw json.RawMessage                 // one buffer for every group's text
	for i := 0; dec.More(); i++ {
		if err := dec.Decode(&raw); err != nil {
			return nil, nil, false
		}
		if string(raw) == "null" {
			gs = append(gs, nil)
			continue
		}
		h := xxhash.Sum64(raw)
		src := ""
		if setSource != nil {
			src = setSource(i)
		}
		if _, twice := next.groups[h]; !twice {
			if was, ok := old[h]; ok && was.n == len(raw) {
				g := was.g
				if g.Source != src {
					g = &tstore.Group{Source: src, Labels: g.Labels, Targets: g.Targets, Own: g.Own}
				}
				next.groups[h] = parsedGroup{g, len(raw)}
				gs = append(gs, g)
				continue
			}
		}
		g, simple := simpleGroup(raw, known)
		if !simple {
			tg := &targetgroup.Group{}
			if err := tg.UnmarshalJSON(raw); err != nil {
				return nil, nil, false
			}
			g = tstore.From(tg)
		}
		if g.Labels == nil {
			g.Labels = model.LabelSet{}
		}
		if slices.Contains(g.Targets, "") {
			return nil, nil, false
		}
		g.Source = src
		if _, twice := next.groups[h]; !twice { // a text that repeats is parsed apart: no label set is in two groups
			next.groups[h] = parsedGroup{g, len(raw)}
		}
		gs = append(gs, g)
	}
	if _, err := dec.Token(); err != nil {
		return nil, nil, false
	}
	return gs, next, true
}

// simpleGroup reads the text of one file_sd group, as the JSON decoder
// has already checked it, when it takes the common form: an object with
// "targets", a list of strings, and "labels", an object of strings, each
// at most once, every string plain printable ASCII without escapes, every
// label name one that all Prometheus versions accept, and no address
// empty. Anything else is not simple, and is left to encoding/json. The
// strings are carved from one copy of the text and the list of targets is
// made once: the garbage of a parse is about the text, not a temporary
// string per target and the decoder's copies. known, when not nil, gives
// the address strings and labels maps to hold instead of new ones, and the
// group then keeps none of its text for its labels.
func simpleGroup(raw []byte, known *Known) (*tstore.Group, bool) {
	text := string(raw)
	i := 0
	space := func() {
		for i < len(text) && (text[i] == ' ' || text[i] == '\n' || text[i] == '\t' || text[i] == '\r') {
			i++
		}
	}
	// str reads a plain string at i.
	str := func() (string, bool) {
		if i >= len(text) || text[i] != '"' {
			return "", false
		}
		start := i + 1
		for j := start; j < len(text); j++ {
			switch c := text[j]; {
			case c == '"':
				i = j + 1
				return text[start:j], true
			case c < 0x20 || c > 0x7e || c == '\\':
				return "", false
			}
		}
		return "", false
	}
	// next reads the separator after an element: more reports a comma.
	next := func(end byte) (more, ok bool) {
		space()
		if i < len(text) && text[i] == ',' {
			i++
			space()
			return true, true
		}
		if i < len(text) && text[i] == end {
			i++
			return false, true
		}
		return false, false
	}
	// colon reads the colon between a key and its value.
	colon := func() bool {
		space()
		if i >= len(text) || text[i] != ':' {
			return false
		}
		i++
		space()
		return i < len(text)
	}
	g := &tstore.Group{}
	seenTargets, seenLabels := false, false
	space()
	if i >= len(text) || text[i] != '{' {
		return nil, false
	}
	i++
	space()
	empty := i < len(text) && text[i] == '}'
	if empty {
		i++
	}
	for more := !empty; more; {
		key, ok := str()
		if !ok || !colon() {
			return nil, false
		}
		switch {
		case key == "targets" && !seenTargets && text[i] == '[':
			seenTargets = true
			i++
			space()
			// At most one target per comma after here: the list is made once.
			g.Targets = make([]string, 0, strings.Count(text[i:], ",")+1)
			if i < len(text) && text[i] == ']' {
				i++
				break
			}
			for {
				a, ok := str()
				if !ok || a == "" {
					return nil, false
				}
				if known != nil && known.Addr != nil {
					if k := known.Addr(a); k != "" {
						a = k
					}
				}
				g.Targets = append(g.Targets, a)
				more, ok := next(']')
				if !ok {
					return nil, false
				}
				if !more {
					break
				}
			}
		case key == "labels" && !seenLabels && text[i] == '{':
			seenLabels = true
			i++
			space()
			var pairs [][2]string
			if i < len(text) && text[i] == '}' {
				i++
				g.Labels = model.LabelSet{}
				break
			}
			for {
				name, ok := str()
				if !ok || !labels.ValidName(name) {
					return nil, false
				}
				if slices.ContainsFunc(pairs, func(p [2]string) bool { return p[0] == name }) || !colon() {
					return nil, false
				}
				v, ok := str()
				if !ok {
					return nil, false
				}
				pairs = append(pairs, [2]string{name, v})
				more, ok := next('}')
				if !ok {
					return nil, false
				}
				if !more {
					break
				}
			}
			g.Labels = known.labels(pairs)
		default:
			return nil, false
		}
		if more, ok = next('}'); !ok {
			return nil, false
		}
	}
	space()
	if i != len(text) {
		return nil, false
	}
	if g.Targets == nil {
		g.Targets = []string{}
	}
	return g, true
}
