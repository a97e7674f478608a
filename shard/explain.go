package shard

import (
	"fmt"
	"slices"
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
	// the first Replicas own it, unless failure domains pass some over.
	Preference []string `json:"preference"`
	// Owners are the members that own the key, in the order picked: the
	// first Replicas of Preference, skipping a member whose domain already
	// holds a replica while another domain can take it.
	Owners []string `json:"owners"`
	// Domains maps each member of the ring to its failure domain, when the
	// members have more than one.
	Domains map[string]string `json:"domains,omitempty"`
	// Dropped says that Options.Placement (a relabelling, say) left the
	// target out: it is placed nowhere.
	Dropped bool `json:"dropped,omitempty"`
	// PreferZone is the failure domain the target's first replica prefers.
	PreferZone string `json:"prefer_zone,omitempty"`
	// Placement says, for a person, what Options.Placement did to the
	// target (which rule dropped or rewrote it), when it did something.
	Placement string `json:"placement,omitempty"`
	// Why is a sentence for a person.
	Why string `json:"why"`
}

// Explain tells who owns the target with address target in assignment a,
// made by ring r with key label keyLabel ("" means __address__), and why.
// A target that is not in the pool is explained as if it were added.
func Explain(r Ring, a *Assignment, target string, keyLabel model.LabelName) Explanation {
	return ExplainPlacement(r, a, target, keyLabel, Placement{}, "")
}

// ExplainPlacement is [Explain] for a target that [Options.Placement]
// placed as p: left out, placed by p.Key, or preferring the domain p.Zone;
// note, when not empty, says why, for a person (the rule that dropped or
// rewrote it).
func ExplainPlacement(r Ring, a *Assignment, target string, keyLabel model.LabelName, p Placement, note string) Explanation {
	e := Explanation{Target: target, Ring: string(a.Ring), Replicas: a.Replicas, KeyLabel: string(model.AddressLabel),
		Key: target, Members: []string{}}
	for _, m := range a.Members {
		for _, g := range a.Groups[m.ID] {
			for i, addr := range g.Targets {
				if addr != target {
					continue
				}
				e.InPool = true
				e.Key = keyOf(g.OwnOf(i), addr, g.Labels, keyLabel)
				if len(e.Members) == 0 || e.Members[len(e.Members)-1] != m.ID {
					e.Members = append(e.Members, m.ID)
				}
			}
		}
	}
	if keyLabel != "" && keyLabel != model.AddressLabel && e.Key != target {
		e.KeyLabel = string(keyLabel)
	}
	e.Placement, e.PreferZone = note, p.Zone
	if p.Drop {
		e.Dropped, e.Members = true, []string{}
		e.Why = "left out before placement: placed nowhere and not counted"
		if note != "" {
			e.Why += " (" + note + ")"
		}
		return e
	}
	if p.Key != "" {
		e.Key, e.KeyLabel = p.Key, "placement key"
	}
	if alone, crowded := slices.Contains(a.Isolated, target), slices.Contains(a.Crowded, target); alone || crowded {
		e.Owners = e.Members
		e.Why = fmt.Sprintf("it is isolated (a heavy target gets a member of its own): it is alone on %s", strings.Join(e.Members, ", "))
		if crowded {
			e.Why = fmt.Sprintf("it is isolated, but no member was free: it shares %s with another isolated target", strings.Join(e.Members, ", "))
		}
		if note != "" {
			e.Why = note + "; " + e.Why
		}
		return e
	}
	ms := r.Members()
	h := Hash(e.Key)
	for _, i := range r.Owners(h, len(ms), nil) {
		e.Preference = append(e.Preference, ms[i].ID)
	}
	e.KeyHash = fmt.Sprintf("%016x", h)
	sp := newSpread(ms)
	prefer := int32(-1)
	if p.Zone != "" {
		prefer = sp.domainOf(p.Zone)
	}
	var picked []int
	if p.override() {
		picked, _ = placeOverride(r, sp, nil, p, h, a.Replicas, prefer, nil, nil)
	} else {
		picked, _ = sp.preferring(r, h, a.Replicas, prefer, nil, nil)
	}
	for _, i := range picked {
		e.Owners = append(e.Owners, ms[i].ID)
	}
	if sp.domains() > 1 {
		e.Domains = make(map[string]string, len(ms))
		for _, m := range ms {
			e.Domains[m.ID] = m.Domain
		}
	}
	if !e.InPool {
		e.Why = fmt.Sprintf("not in the target pool; if it were, key %q would go to %s", e.Key, strings.Join(e.Owners, ", "))
		return e
	}
	e.Why = fmt.Sprintf("the %s ring ranks the %d members for key %q (%s) as %s", a.Ring, len(e.Preference), e.Key,
		e.KeyLabel, strings.Join(e.Preference, ", "))
	if note != "" {
		e.Why = note + "; " + e.Why
	}
	switch {
	case p.Every:
		return withWhy(e, "; it is placed on every member")
	case p.Pin != "" && len(e.Owners) > 0 && e.Owners[0] == p.Pin:
		return withWhy(e, fmt.Sprintf("; it is pinned to %s, which takes replica 1", p.Pin))
	case p.Pin != "" && p.PinStrict:
		return withWhy(e, fmt.Sprintf("; it is pinned to %s, which is not in the ring, so it is placed nowhere", p.Pin))
	case p.Pin != "":
		e.Why += fmt.Sprintf("; it is pinned to %s, which is not in the ring, so the ring places it", p.Pin)
	case p.Replicas > 0:
		e.Why += fmt.Sprintf("; it has %d replicas of its own", len(e.Owners))
	}
	switch {
	case prefer >= 0 && len(e.Owners) > 0:
		e.Why += fmt.Sprintf("; it prefers zone %q, where %s is the best-ranked member and takes replica 1", p.Zone, e.Owners[0])
		if a.Replicas < 2 {
			return e
		}
		e.Why += "; the others go to other zones"
		return e
	case p.Zone != "":
		e.Why += fmt.Sprintf("; it prefers zone %q, which has no member, so the ring decides", p.Zone)
	}
	if e.Domains == nil || a.Replicas < 2 {
		e.Why += fmt.Sprintf("; the first %d own it", a.Replicas)
		return e
	}
	e.Why += "; " + strings.Join(spreadReasons(e), "; ")
	return e
}

// spreadReasons says, member by member along the preference order, why
// each owner was picked and each member before the last owner passed over.
func spreadReasons(e Explanation) []string {
	rank := make(map[string]int, len(e.Owners))
	for i, id := range e.Owners {
		rank[id] = i + 1
	}
	holder := map[string]string{} // domain -> the first owner in it
	var out []string
	left := len(e.Owners)
	for _, id := range e.Preference {
		if left == 0 {
			break
		}
		d := e.Domains[id]
		n, owns := rank[id]
		h := holder[d]
		switch {
		case owns && h == "":
			out = append(out, fmt.Sprintf("%s (domain %q) takes replica %d", id, d, n))
			holder[d] = id
		case owns:
			out = append(out, fmt.Sprintf("%s (domain %q) takes replica %d, as there are fewer domains than replicas", id, d, n))
		case h != "":
			out = append(out, fmt.Sprintf("%s is passed over: %s in domain %q already holds replica %d", id, h, d, rank[h]))
		}
		if owns {
			left--
		}
	}
	return out
}

// withWhy is e with more of its sentence.
func withWhy(e Explanation, more string) Explanation {
	e.Why += more
	return e
}
