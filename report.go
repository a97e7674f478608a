package promshard

import (
	"strings"
	"time"

	"github.com/prometheus/prometheus/discovery/targetgroup"

	"github.com/promshard/promshard/audit"
	"github.com/promshard/promshard/elect"
	"github.com/promshard/promshard/internal/tstore"
	"github.com/promshard/promshard/reload"
	"github.com/promshard/promshard/shard"
	"github.com/promshard/promshard/watch"
)

// Reason is why a reshard ran: a set of causes, as bursts coalesce into one
// reshard. Its String is the causes' names joined by "+" ("members",
// "targets+timer"); an empty set is "timer".
type Reason uint16

// The causes of a reshard; their names are those of reasonNames.
const (
	reasonMembers Reason = 1 << iota // the member set changed
	reasonTargets                    // a provider reported new targets
	reasonTimer                      // the refresh interval passed
	reasonOnce                       // Sharder.Once
	reasonRequest                    // Sharder.Reshard
	reasonLeader                     // this copy became leader or stopped being one
	reasonHandoff                    // hand-offs ended
	reasonBalance                    // the balance chose new costs
	reasonCosts                      // a published cost table was read
	reasonRepair                     // the audit asked for a repair
)

var reasonNames = []string{"members", "targets", "timer", "once", "request", "leader", "handoff", "balance",
	"costs", "repair"}

// String names the causes, joined by "+".
func (r Reason) String() string {
	if r == 0 {
		return "timer"
	}
	var parts []string
	for i, n := range reasonNames {
		if r&(1<<i) != 0 {
			parts = append(parts, n)
		}
	}
	return strings.Join(parts, "+")
}

// forces reports whether the reshard must write even when its inputs are
// those of the last one: a repair rewrites what was changed by hand, and a
// copy that became leader writes what it computed as a standby.
func (r Reason) forces() bool { return r&(reasonRepair|reasonLeader) != 0 }

// Role is a job's role under Options.Elector.
type Role string

// Roles of a job in [Snapshot.Role]; "" when the job is not elected.
const (
	RoleLeader  Role = "leader"
	RoleStandby Role = "standby"
)

// String is the role's name.
func (r Role) String() string { return string(r) }

// Report is what one reshard of a job did.
type Report struct {
	// Job is the job's name; Reason what triggered the reshard.
	Job    string
	Reason Reason
	// Start is when the reshard began; Took how long it ran (reloads
	// included only for [Sharder.Reshard] and [Sharder.Once]).
	Start time.Time
	Took  time.Duration
	// Members is the number of members in the ring; Excluded the members
	// left out because an output cannot serve their ID.
	Members  int
	Excluded []string
	// Targets is the number of targets placed; Replicas the replication
	// achieved (fewer than asked when there are fewer members).
	Targets, Replicas int
	// StaleTargets is set when the provider's last fetch failed and its
	// last good targets were used; TargetsErr is its error.
	StaleTargets bool
	TargetsErr   error
	// Diff is what changed against the last assignment written.
	Diff shard.Diff
	// Changed lists the members whose output changed; Repaired those whose
	// output was written again because it no longer held what was written
	// (a file deleted or changed by someone else).
	Changed, Repaired []string
	// Skipped is set when the loop found the members and the targets as
	// at the last successful reshard and left the outputs alone;
	// Assignment is then that reshard's.
	Skipped bool
	// Held lists the collectors that left while the partition guard
	// (Job.Guard) holds the assignment: the outputs stay as they are
	// (Skipped is set).
	Held []string
	// Standby is set when this copy does not lead (Options.Elector): it
	// computed the assignment and wrote nothing.
	Standby bool
	// Draining lists the drained collectors and Leaving the sick ones (see
	// the glossary in the package doc): out of the ring, they get an empty
	// list, not a removed file, so that one that still runs scrapes
	// nothing.
	Draining, Leaving []string
	// Files maps each member whose file an output wrote (only Self in self
	// mode; none in a dry run) to that file.
	Files map[string]string
	// Reloads are the reload outcomes ([Sharder.Reshard] and
	// [Sharder.Once] only; the loop reloads in the background).
	Reloads reload.Results
	// Assignment is the assignment the outputs accepted in this reshard;
	// nil when it failed.
	Assignment *shard.Assignment
	// Err is the reshard's error (nil when the outputs hold the new
	// assignment).
	Err error
}

// Snapshot is a job's state for status pages and HTTP handlers.
type Snapshot struct {
	// Job is the job's name; Self its self-mode member ("" in central mode).
	Job, Self string
	// Assignment is the last assignment the outputs accepted, Ring the ring
	// that made it and Members the members it was made for (with their
	// addresses); nil before the first success.
	Assignment *shard.Assignment
	Ring       shard.Ring
	Members    []watch.Member
	// KeyLabel is the label that places targets ("" for __address__).
	KeyLabel string
	// Generation counts the reshards that changed the assignment or an
	// output (the first included); it is what audit.Job.Generation is
	// given.
	Generation uint64
	// LastSuccess is when the outputs last accepted an assignment.
	LastSuccess time.Time
	// Audit is the last audit's report (with Options.Audit), nil before.
	// UnscrapedSeconds and DoubleScrapedSeconds are the target-seconds the
	// audits found scraped by fewer, and by more (beyond planned
	// hand-offs), collectors than assigned since the job started.
	Audit                                  *audit.Report
	UnscrapedSeconds, DoubleScrapedSeconds float64
	// Groups is what the outputs hold: the assignment's groups, plus the
	// targets that old owners keep while hand-offs are pending, in the
	// module's compact form (each target its address, a label set only for
	// one with labels of its own); [Snapshot.GroupsOf] gives one
	// collector's as [targetgroup.Group] values. Shared: read-only.
	Groups map[string][]*tstore.Group
	// Handoffs is the number of targets with a pending hand-off;
	// HandoffsSince when the oldest of them began (zero without one).
	Handoffs      int
	HandoffsSince time.Time
	// Leavers are the collectors out of the ring that are still registered
	// (drained or sick), each with its State: they get an empty list.
	Leavers []watch.Member
	// Role is the job's role under Options.Elector ("" otherwise); Leader
	// names the current leader. On a standby, Assignment is what this copy
	// computed, ready for a takeover; the outputs hold the leader's.
	Role   Role
	Leader string
	// Epoch is the job's last published epoch that this copy knows: the one
	// it published as leader, or read as a standby or in self mode; Agrees
	// says whether it is the plan of this copy's Assignment.
	Epoch  elect.Epoch
	Agrees bool
	// Last is the report of the last reshard, failed or not.
	Last Report
	// Recent are the last reshards, newest first (at most 10), without
	// their assignments, files and reloads.
	Recent []Report
	// PendingReloads lists members whose reload has not succeeded yet;
	// Reloads holds each collector's last reload outcome.
	PendingReloads []string
	Reloads        map[string]reload.Result
	// Events are what happened to the job, newest first: joins, leaves
	// and the targets that moved, hand-offs, leadership, audit findings,
	// failures (at least the last 200, and those of the last 24 hours).
	Events []Event
	// CollectorsNeeded is how many collectors the measured series need
	// within Capacity.MaxSeries, R included, plus headroom for losing one
	// collector (or, spread over domains, the biggest domain); zero when
	// not balanced by series or without a cap.
	CollectorsNeeded int
	// Heaviest lists, per collector, its heaviest targets by measured
	// series (at most 10, heaviest first) when the job balances by series.
	Heaviest map[string][]shard.TargetLoad
	// Placement counts the targets of the last reshard that Job.Relabel
	// dropped and those with an override label (LabelEvery, LabelPin,
	// LabelReplicas, LabelIsolate).
	Placement PlacementCounts
}

// Ready reports whether the job has an assignment in its outputs and its
// last reshard succeeded.
func (s Snapshot) Ready() bool { return s.Assignment != nil && s.Last.Err == nil }

// GroupsOf returns what collector id's outputs hold (see Groups) as
// [targetgroup.Group] values, a label set made for each target that is its
// address alone; nil for a collector without an entry.
func (s Snapshot) GroupsOf(id string) []*targetgroup.Group {
	return tstore.Of(s.Groups, id)
}
