package shard

import (
	"fmt"
	"strings"

	"github.com/prometheus/common/model"
)

// Explanation says which members own a target, and why.
type Explanation struct {
	// Target is the address asked about; InPool whether it is in the
	// assignment's targets.
	Target string `json:"target"`
	InPool bool   `json:"in_pool"`
	// Members own the target in the assignment (empty when not in the pool).
	Members []string `json:"members"`
	// KeyLabel is the label whose value placed the target, Key that value
	// and KeyHash its hash as fed to the ring.
	KeyLabel string `json:"key_label"`
	Key      string `json:"key"`
	KeyHash  string `json:"key_hash"`
	// Ring and Replicas are those of the assignment.
	Ring     string `json:"ring"`
	Replicas int    `json:"replicas"`
	// Preference ranks every member of the ring for the key, best first;
	// the first Replicas own it.
	Preference []string `json:"preference"`
	// Why is a sentence for a person.
	Why string `json:"why"`
}

// Explain tells who owns the target with address target in assignment a,
// made by ring r with key label keyLabel ("" means __address__), and why.
// A target that is not in the pool is explained as if it were added.
func Explain(r Ring, a *Assignment, target string, keyLabel model.LabelName) Explanation {
	e := Explanation{Target: target, Ring: string(a.Ring), Replicas: a.Replicas, KeyLabel: string(model.AddressLabel),
		Key: target, Members: []string{}}
	for _, m := range a.Members {
		for _, g := range a.Groups[m.ID] {
			for _, t := range g.Targets {
				if string(t[model.AddressLabel]) != target {
					continue
				}
				e.InPool = true
				e.Key = Key(t, g.Labels, keyLabel)
				if len(e.Members) == 0 || e.Members[len(e.Members)-1] != m.ID {
					e.Members = append(e.Members, m.ID)
				}
			}
		}
	}
	if keyLabel != "" && keyLabel != model.AddressLabel && e.Key != target {
		e.KeyLabel = string(keyLabel)
	}
	for _, m := range Lookup(r, e.Key, len(r.Members())) {
		e.Preference = append(e.Preference, m.ID)
	}
	e.KeyHash = fmt.Sprintf("%016x", Hash(e.Key))
	owners := e.Preference[:min(a.Replicas, len(e.Preference))]
	if e.InPool {
		e.Why = fmt.Sprintf("the %s ring ranks the %d members for key %q (%s) as %s; the first %d own it",
			a.Ring, len(e.Preference), e.Key, e.KeyLabel, strings.Join(e.Preference, ", "), a.Replicas)
	} else {
		e.Why = fmt.Sprintf("not in the target pool; if it were, key %q would go to %s", e.Key, strings.Join(owners, ", "))
	}
	return e
}
