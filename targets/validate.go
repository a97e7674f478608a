package targets

import (
	"fmt"
	"unicode/utf8"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery/targetgroup"
)

// GroupError says why a group was not passed on.
type GroupError struct {
	Job    string
	Source string
	Reason string
}

// Error says which group of which job was dropped, and why.
func (e *GroupError) Error() string {
	return fmt.Sprintf("job %q group %q: %s", e.Job, e.Source, e.Reason)
}

// Validate returns the groups that Prometheus would accept and an error for
// each one it would not: a target without __address__, a label name that
// is not valid under the legacy rules every Prometheus version accepts, or
// a label value that is not UTF-8. Nil and empty groups are dropped
// silently.
func Validate(job string, groups []*targetgroup.Group) (valid []*targetgroup.Group, invalid []*GroupError) {
	valid = make([]*targetgroup.Group, 0, len(groups))
	for _, g := range groups {
		if g == nil || len(g.Targets) == 0 {
			continue
		}
		if reason := checkGroup(g); reason != "" {
			invalid = append(invalid, &GroupError{Job: job, Source: g.Source, Reason: reason})
			continue
		}
		valid = append(valid, g)
	}
	return valid, invalid
}

func checkGroup(g *targetgroup.Group) string {
	if r := checkLabels(g.Labels); r != "" {
		return "group " + r
	}
	for i, t := range g.Targets {
		if t[model.AddressLabel] == "" {
			return fmt.Sprintf("target %d (%v) has no __address__", i, t)
		}
		if r := checkLabels(t); r != "" {
			return fmt.Sprintf("target %q %s", t[model.AddressLabel], r)
		}
	}
	return ""
}

func checkLabels(ls model.LabelSet) string {
	for n, v := range ls {
		if !model.LegacyValidation.IsValidLabelName(string(n)) {
			return fmt.Sprintf("label name %q is not valid", n)
		}
		if !utf8.ValidString(string(v)) {
			return fmt.Sprintf("label %q value is not valid UTF-8", n)
		}
	}
	return ""
}
