// Package shard decides which collectors scrape which targets.
//
// It is pure computation: no I/O, no goroutines, no clocks. Given the healthy
// collectors (as [Member] values) and the target pool (as Prometheus
// [targetgroup.Group] values), [Assign] gives every target to R distinct
// members, deterministically: the same members and targets, in any input
// order, give the same result on every machine, so several promshard
// processes agree without talking to each other. The [Assignment] holds
// each member's groups in the module's compact form (each target its
// address, a label set only for a target with labels of its own), so that a
// million targets cost a string each, not a map each;
// [Assignment.GroupsOf] gives them as [targetgroup.Group] values, and
// [AssignCompact] places groups already in that form (the Sharder's).
//
// A [Ring] maps a 64-bit key hash to members. Rings are immutable values,
// built once per member set and safe for concurrent lookups without locks.
// [New] builds one of three kinds; each kind is kept behind the interface:
//
//   - [KindRendezvous] (the default): highest-random-weight
//     hashing on xxhash. Optimal movement (only the targets of a member that
//     leaves move; a member that joins takes targets only for itself), load as
//     even as random placement allows, no allocation per lookup, no build
//     cost. A lookup costs one multiply-xorshift per unit of member weight.
//   - [KindConsistent]: a flat, sorted consistent-hash ring
//     with virtual points and a prefix index. Lookups are O(1) on average and
//     independent of the member count; build time and balance grow with the
//     number of points.
//   - [KindHashring]: consistent hashing on
//     github.com/serialx/hashring, with enough points per member to balance
//     (the library's default of one point per member leaves the busiest
//     member with several times the mean). It allocates on every lookup.
//
// The package benchmarks (go test -bench . ./shard) compare them; the README
// holds the numbers that chose the default.
//
// Members may name a failure domain ([Member.Domain]: a zone, a rack). The
// R replicas of a target then never share a domain while another domain can
// take one: walking the target's preference order, a member whose domain
// already holds a replica is passed over. Movement stays minimal: a member
// that leaves moves only its own replicas, a domain that leaves only its
// own. [Explain] says who was passed over and why.
//
// With Options.Costs (measured series per target, say, in a [Costs] table)
// targets are placed by cost with bounded loads: in key-hash order, each on
// the first members of its preference order that stay within (1+Epsilon)
// of their share of the total cost, and never above a member's
// Options.Capacity (what fits nowhere is listed in Assignment.Unplaced).
// Still pure and deterministic. [Overloaded] tells whether costs measured
// since put a member of an assignment above that bound: whether they call
// for a new one.
//
// With Options.Placement each target may be placed by rules of its own
// ([Placement]): left out (a relabelling dropped it), placed by another key
// (its identity after relabelling: targets with one key share owners),
// its first replica in a preferred domain, on every member, pinned to one
// member, or with a replica count of its own. A member that leaves still
// moves only its own replicas. [ExplainPlacement] tells what a placement
// did.
//
// [Compare] reports what changed between two assignments (targets added,
// removed and moved, per member) for logs and metrics, in one linear pass
// over the owners [Assign] recorded. [Simulate] computes what a change of
// members would move, without changing anything.
package shard
