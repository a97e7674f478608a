package web

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery/targetgroup"

	"github.com/promshard/promshard"
	"github.com/promshard/promshard/internal/tstore"
	"github.com/promshard/promshard/shard"
	"github.com/promshard/promshard/watch"
)

// JobAssignment is one job in /api/v1/assignment: how it is placed, which
// plan it is, and each collector's share. It reads back as written, so a
// saved copy can be simulated offline ([JobAssignment.Simulate]).
type JobAssignment struct {
	Ring     shard.Kind `json:"ring"`
	Replicas int        `json:"replicas"`
	KeyLabel string     `json:"key_label,omitempty"`
	// Epoch, Hash and Agrees are the published epoch (with an Elector)
	// and whether this copy's plan is it; Role and Leader the election.
	Epoch  uint64 `json:"epoch,omitempty"`
	Hash   string `json:"hash,omitempty"`
	Agrees bool   `json:"agrees,omitempty"`
	Role   string `json:"role,omitempty"`
	Leader string `json:"leader,omitempty"`
	// Collectors are the ring's members and the registered collectors out
	// of it (State draining or leaving), by ID.
	Collectors map[string]CollectorAssignment `json:"collectors"`
	Unplaced   []string                       `json:"unplaced,omitempty"`
	// CollectorsNeeded is how many collectors the measured series need
	// within the cap, with headroom for a loss (balance by series with a
	// cap; see promshard.Snapshot.CollectorsNeeded).
	CollectorsNeeded int `json:"collectors_needed,omitempty"`
	// MaxSeries is the job's cap of series per collector, when it balances
	// by series with one; with each collector's Series it sizes a saved
	// copy's simulation.
	MaxSeries uint64 `json:"max_series,omitempty"`
}

// CollectorAssignment is one collector's share in a [JobAssignment].
type CollectorAssignment struct {
	Address string   `json:"address,omitempty"`
	Domain  string   `json:"domain,omitempty"`
	Weight  uint32   `json:"weight,omitempty"`
	Targets []string `json:"targets"`
	// Series is the collector's total cost when the job balances by series
	// (the measured series of its targets), and Unplaced, on the job, the
	// targets no collector had room for.
	Series uint64 `json:"series,omitempty"`
	// Heaviest are the collector's heaviest targets by measured series,
	// heaviest first, each with its share of the collector's series (when
	// the job balances by series).
	Heaviest []shard.TargetLoad `json:"heaviest,omitempty"`
	// State is draining or leaving for a collector out of the ring that is
	// still registered, and PushPending whether its output's last change
	// has not reached it yet.
	State       string `json:"state,omitempty"`
	PushPending bool   `json:"push_pending,omitempty"`
}

// Assignment is a job's JobAssignment, as /api/v1/assignment serves it;
// false before its first assignment.
func Assignment(s *promshard.Sharder, name string) (JobAssignment, bool) {
	snap, _ := s.Snapshot(name)
	asg := snap.Assignment
	if asg == nil {
		return JobAssignment{}, false
	}
	addr := map[string]string{}
	for _, m := range snap.Members {
		addr[m.ID] = m.HostPort()
	}
	addrs := func(gs []*tstore.Group) []string {
		out := []string{}
		for _, g := range gs {
			out = append(out, g.Targets...)
		}
		return out
	}
	ja := JobAssignment{Ring: asg.Ring, Replicas: asg.RequestedReplicas, KeyLabel: snap.KeyLabel, Epoch: snap.Epoch.Epoch,
		Hash: snap.Epoch.Hash, Agrees: snap.Agrees, Role: string(snap.Role), Leader: snap.Leader, Collectors: map[string]CollectorAssignment{},
		Unplaced: asg.Unplaced, CollectorsNeeded: snap.CollectorsNeeded}
	if jc, _ := s.Job(name); jc.Balance.By == promshard.BalanceBySeries {
		ja.MaxSeries = jc.Balance.Capacity.MaxSeries
	}
	for _, m := range asg.Members {
		ja.Collectors[m.ID] = CollectorAssignment{Address: addr[m.ID], Domain: m.Domain, Weight: m.Weight,
			Targets: addrs(asg.Groups[m.ID]), Series: asg.Cost[m.ID], Heaviest: snap.Heaviest[m.ID]}
	}
	for _, m := range snap.Leavers {
		ca := CollectorAssignment{Address: m.HostPort(), State: "leaving", Targets: addrs(snap.Groups[m.ID]),
			PushPending: slices.Contains(snap.PendingReloads, m.ID)}
		if m.State == watch.StateMaintenance {
			ca.State = "draining"
		}
		ja.Collectors[m.ID] = ca
	}
	return ja, true
}

// Simulate computes what change would do to the saved assignment: its
// ring members (the collectors without a State) and its targets. A job
// placed by a key label other than __address__ cannot be simulated from a
// saved copy, which holds only addresses.
func (ja JobAssignment) Simulate(ctx context.Context, change shard.Change, capacity int) (*shard.Simulation, error) {
	if ja.KeyLabel != "" && ja.KeyLabel != string(model.AddressLabel) {
		return nil, fmt.Errorf("web: the assignment is placed by label %q, which a saved copy does not hold", ja.KeyLabel)
	}
	var ms []shard.Member
	seen := map[string]bool{}
	g := &targetgroup.Group{Source: "saved"}
	for _, id := range slices.Sorted(maps.Keys(ja.Collectors)) {
		c := ja.Collectors[id]
		if c.State != "" {
			continue
		}
		ms = append(ms, shard.Member{ID: id, Weight: c.Weight, Domain: c.Domain})
		for _, a := range c.Targets {
			if !seen[a] {
				seen[a] = true
				g.Targets = append(g.Targets, model.LabelSet{model.AddressLabel: model.LabelValue(a)})
			}
		}
	}
	sim, err := shard.Simulate(ctx, ja.Ring, ms, []*targetgroup.Group{g}, shard.Options{Replicas: ja.Replicas}, change, capacity)
	if err != nil || ja.MaxSeries == 0 {
		return sim, err
	}
	var load uint64
	for _, c := range ja.Collectors {
		if c.State == "" {
			load += c.Series
		}
	}
	after, err := change.Apply(ms)
	if err != nil {
		return nil, err
	}
	sim.CollectorsNeeded = shard.CollectorsNeeded(load, ja.MaxSeries, after)
	return sim, nil
}

// ReadAssignment reads a saved /api/v1/assignment.
func ReadAssignment(r io.Reader) (map[string]JobAssignment, error) {
	var out map[string]JobAssignment
	if err := json.NewDecoder(r).Decode(&out); err != nil {
		return nil, fmt.Errorf("web: not an /api/v1/assignment answer: %w", err)
	}
	return out, nil
}

// SimulateSaved simulates change on every job of a saved
// /api/v1/assignment, offline.
func SimulateSaved(ctx context.Context, r io.Reader, change shard.Change, capacity int) (map[string]*shard.Simulation, error) {
	saved, err := ReadAssignment(r)
	if err != nil {
		return nil, err
	}
	sims := map[string]*shard.Simulation{}
	for _, job := range slices.Sorted(maps.Keys(saved)) {
		if sims[job], err = saved[job].Simulate(ctx, change, capacity); err != nil {
			return nil, fmt.Errorf("job %q: %w", job, err)
		}
	}
	return sims, nil
}

// ParseChange reads a what-if as a command line or a query gives it:
// remove holds member IDs, add "ID" or "ID:WEIGHT", weight "ID=WEIGHT".
// Errors name the value.
func ParseChange(remove, add, weight []string) (shard.Change, error) {
	c := shard.Change{Remove: remove, Weight: map[string]uint32{}}
	parseWeight := func(what, v string) (uint32, error) {
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil || n == 0 || n > shard.MaxWeight {
			return 0, fmt.Errorf("%s: weight %q: want 1 to %d", what, v, shard.MaxWeight)
		}
		return uint32(n), nil
	}
	for _, a := range add {
		id, w, hasW := strings.Cut(a, ":")
		m := shard.Member{ID: id}
		if hasW {
			n, err := parseWeight("add "+a, w)
			if err != nil {
				return c, err
			}
			m.Weight = n
		}
		c.Add = append(c.Add, m)
	}
	for _, kv := range weight {
		id, w, ok := strings.Cut(kv, "=")
		if !ok || id == "" {
			return c, fmt.Errorf("weight %q: want ID=WEIGHT", kv)
		}
		n, err := parseWeight("weight "+kv, w)
		if err != nil {
			return c, err
		}
		c.Weight[id] = n
	}
	return c, nil
}
