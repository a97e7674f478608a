// Package tstore is the compact form in which the module holds targets
// between its borders: a group's source and labels once, each target as
// its address (a string, usually carved from the text it was read from),
// and a label set only for a target that has labels besides __address__.
// A million file_sd targets then cost a string each, not a Go map each
// (at least 364 B). [targetgroup.Group] stays the currency at every
// border a user sees; From and Group convert.
package tstore

import (
	"unsafe"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery/targetgroup"

	"github.com/promshard/promshard/internal/labels"
)

// Group is a target group held compactly. Groups, their Labels and their
// target label sets travel shared and read-only.
type Group struct {
	Source string
	Labels model.LabelSet
	// Targets are the targets' addresses (__address__), in order.
	Targets []string
	// Own is nil when every target is its address alone; otherwise it has
	// an entry per target: the target's whole label set when it has labels
	// besides __address__, or nil.
	Own []model.LabelSet
}

// Len is the number of targets.
func (g *Group) Len() int {
	if g == nil {
		return 0
	}
	return len(g.Targets)
}

// OwnOf is target i's whole label set when it has labels besides
// __address__, else nil.
func (g *Group) OwnOf(i int) model.LabelSet {
	if g.Own == nil {
		return nil
	}
	return g.Own[i]
}

// Target is target i's label set: its own, or a new set of its address.
func (g *Group) Target(i int) model.LabelSet {
	if t := g.OwnOf(i); t != nil {
		return t
	}
	return model.LabelSet{model.AddressLabel: model.LabelValue(g.Targets[i])}
}

// Label is label n of target i, from its own set, or its address for
// __address__ of a target that is its address alone; ok is false when the
// target has no such label (its group's labels are not looked at).
func (g *Group) Label(i int, n model.LabelName) (v model.LabelValue, ok bool) {
	if t := g.OwnOf(i); t != nil {
		v, ok = t[n]
		return v, ok
	}
	if n == model.AddressLabel {
		return model.LabelValue(g.Targets[i]), true
	}
	return "", false
}

// Group is g as a [targetgroup.Group]: its Labels and own label sets
// shared, a new set for each other target. Nil for nil.
func (g *Group) Group() *targetgroup.Group {
	if g == nil {
		return nil
	}
	ts := make([]model.LabelSet, len(g.Targets))
	for i := range ts {
		ts[i] = g.Target(i)
	}
	return &targetgroup.Group{Source: g.Source, Labels: g.Labels, Targets: ts}
}

// With is a group of g's source and labels holding the targets at idx,
// in that order.
func (g *Group) With(idx []int) *Group {
	out := &Group{Source: g.Source, Labels: g.Labels, Targets: make([]string, 0, len(idx))}
	for _, i := range idx {
		out.Append(g, i)
	}
	return out
}

// Append appends target i of src to g (which has src's source and labels).
func (g *Group) Append(src *Group, i int) {
	g.Targets = append(g.Targets, src.Targets[i])
	t := src.OwnOf(i)
	if t == nil && g.Own == nil {
		return
	}
	if g.Own == nil {
		g.Own = make([]model.LabelSet, len(g.Targets)-1, cap(g.Targets))
	}
	g.Own = append(g.Own, t)
}

// From converts a group: a target whose label set is its address alone
// becomes that string (sharing its bytes), any other keeps its set. Nil
// for nil. A target without __address__ has "" as its address and keeps
// its set, for the caller to refuse.
func From(g *targetgroup.Group) *Group {
	if g == nil {
		return nil
	}
	out := &Group{Source: g.Source, Labels: g.Labels, Targets: make([]string, len(g.Targets))}
	for i, t := range g.Targets {
		addr, ok := t[model.AddressLabel]
		out.Targets[i] = string(addr)
		if ok && len(t) == 1 {
			continue
		}
		if out.Own == nil {
			out.Own = make([]model.LabelSet, len(g.Targets))
		}
		out.Own[i] = t
	}
	return out
}

// FromAll converts every group (see [From]).
func FromAll(gs []*targetgroup.Group) []*Group {
	if gs == nil {
		return nil
	}
	out := make([]*Group, len(gs))
	for i, g := range gs {
		out[i] = From(g)
	}
	return out
}

// All converts every group back (see [Group.Group]).
func All(gs []*Group) []*targetgroup.Group {
	if gs == nil {
		return nil
	}
	out := make([]*targetgroup.Group, len(gs))
	for i, g := range gs {
		out[i] = g.Group()
	}
	return out
}

// AllOf converts every member's groups back.
func AllOf(m map[string][]*Group) map[string][]*targetgroup.Group {
	if m == nil {
		return nil
	}
	out := make(map[string][]*targetgroup.Group, len(m))
	for id := range m {
		out[id] = Of(m, id)
	}
	return out
}

// FromAllOf converts every member's groups.
func FromAllOf(m map[string][]*targetgroup.Group) map[string][]*Group {
	if m == nil {
		return nil
	}
	out := make(map[string][]*Group, len(m))
	for id, gs := range m {
		out[id] = FromAll(gs)
		if out[id] == nil {
			out[id] = []*Group{}
		}
	}
	return out
}

// Identity is the address of a string's bytes, or 0 for "": strings
// carved from one text, and copied as headers, keep it.
func Identity(s string) uintptr { return uintptr(unsafe.Pointer(unsafe.StringData(s))) }

// SameTargets reports whether a and b hold the same targets by identity:
// the same addresses (the very bytes) and the same own label sets, in
// order. It never reads a string, so it is a false negative for equal
// copies, never a false positive.
func SameTargets(a, b *Group) bool {
	if len(a.Targets) != len(b.Targets) || (a.Own == nil) != (b.Own == nil) {
		return false
	}
	if len(a.Targets) > 0 && &a.Targets[0] == &b.Targets[0] && (a.Own == nil || &a.Own[0] == &b.Own[0]) {
		return true
	}
	for i, s := range a.Targets {
		if len(s) != len(b.Targets[i]) || Identity(s) != Identity(b.Targets[i]) {
			return false
		}
	}
	for i, t := range a.Own {
		if labels.Identity(t) != labels.Identity(b.Own[i]) {
			return false
		}
	}
	return true
}

// Count counts the targets of gs.
func Count(gs []*Group) int {
	n := 0
	for _, g := range gs {
		n += g.Len()
	}
	return n
}

// Of converts member id's groups in m back (see [Group.Group]): nil when
// m has no entry for id, an empty list for an empty entry.
func Of(m map[string][]*Group, id string) []*targetgroup.Group {
	gs, ok := m[id]
	if !ok {
		return nil
	}
	if out := All(gs); out != nil {
		return out
	}
	return []*targetgroup.Group{}
}
