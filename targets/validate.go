package targets

import (
	"fmt"

	"github.com/cespare/xxhash/v2"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery/targetgroup"

	"github.com/promshard/promshard/internal/labels"
	"github.com/promshard/promshard/internal/tstore"
)

// GroupError says why a group, or one target of it, was not passed on.
type GroupError struct {
	Job    string
	Source string
	Reason string
}

// Error says which group of which job was dropped (or lost a target), and
// why.
func (e *GroupError) Error() string {
	return fmt.Sprintf("job %q group %q: %s", e.Job, e.Source, e.Reason)
}

// Validate returns what Prometheus would accept of groups, and an error for
// each part it would not. A group whose own labels are invalid (a label
// name not valid under the legacy rules every Prometheus version accepts, a
// value that is not UTF-8) is dropped whole; a target without __address__
// or with such a label is dropped alone, and the rest of its group is kept
// (in a copy: the input is not modified). Nil and empty groups are dropped
// silently.
func Validate(job string, groups []*targetgroup.Group) (valid []*targetgroup.Group, invalid []*GroupError) {
	compact := make([]*tstore.Group, 0, len(groups))
	orig := make(map[*tstore.Group]*targetgroup.Group, len(groups))
	for _, g := range groups {
		if c := tstore.From(g); c != nil {
			compact = append(compact, c)
			orig[c] = g
		}
	}
	kept, invalid, _, _ := validate(job, compact, nil)
	for _, g := range kept {
		if o, whole := orig[g]; whole {
			valid = append(valid, o) // every target good: the group itself
		} else {
			valid = append(valid, g.Group())
		}
	}
	if valid == nil {
		valid = []*targetgroup.Group{}
	}
	return valid, invalid
}

// groupCheck is what validate made of one group: what of it is valid (nil:
// nothing), what is not, and its share of the fingerprint. Groups are
// read-only once handed over, so the same *Group with as many targets is
// the same check: a provider that gives back the groups that did not change
// (targets.File) has only the others checked.
type groupCheck struct {
	valid   *tstore.Group
	invalid []*GroupError
	fp      uint64
	n       int
}

// validate is Validate that also fingerprints what it keeps (see
// [Result.Fingerprint]), in the same pass over the labels. A group checked
// in prev (the checks of the last fetch) is not checked again; checks are
// those of this fetch.
func validate(job string, groups []*tstore.Group, prev map[*tstore.Group]groupCheck) (valid []*tstore.Group, invalid []*GroupError, fp uint64, checks map[*tstore.Group]groupCheck) {
	valid = make([]*tstore.Group, 0, len(groups))
	checks = make(map[*tstore.Group]groupCheck, len(groups))
	for _, g := range groups {
		if g == nil || len(g.Targets) == 0 {
			continue
		}
		c, ok := prev[g]
		if !ok || c.n != len(g.Targets) {
			c = check(job, g)
		}
		checks[g] = c
		fp += c.fp
		invalid = append(invalid, c.invalid...)
		if c.valid != nil {
			valid = append(valid, c.valid)
		}
	}
	return valid, invalid, fp, checks
}

// check validates one group.
func check(job string, g *tstore.Group) (c groupCheck) {
	c.n = len(g.Targets)
	r, gh := labels.CheckHash(g.Labels)
	if r != "" {
		c.invalid = []*GroupError{{Job: job, Source: g.Source, Reason: "group " + r}}
		return c
	}
	gh = xxhash.Sum64String(g.Source) ^ labels.Mix(gh)
	var kept []int // nil while every target is good
	for i, addr := range g.Targets {
		var r string
		var th uint64
		if t := g.OwnOf(i); t != nil {
			r, th = labels.CheckHash(t)
			if addr == "" {
				r = fmt.Sprintf("target %d (%v) has no __address__", i, t)
			}
		} else {
			r, th = labels.CheckAddressHash(addr)
			if addr == "" {
				r = fmt.Sprintf("target %d (%v) has no __address__", i, model.LabelSet{model.AddressLabel: ""})
			}
		}
		if r == "" {
			c.fp += labels.Mix(gh ^ th)
		} else if addr != "" {
			r = fmt.Sprintf("target %q %s", addr, r)
		}
		switch {
		case r != "":
			c.invalid = append(c.invalid, &GroupError{Job: job, Source: g.Source, Reason: r})
			if kept == nil {
				kept = make([]int, 0, len(g.Targets)-1)
				for k := range i {
					kept = append(kept, k)
				}
			}
		case kept != nil:
			kept = append(kept, i)
		}
	}
	switch {
	case kept == nil:
		c.valid = g
	case len(kept) > 0:
		c.valid = g.With(kept)
	}
	return c
}
