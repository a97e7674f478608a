package watch

import (
	"context"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"

	"github.com/promshard/promshard/internal/weight"
)

// Member is one healthy collector. The YAML tags let a config file list
// static collectors as members (id, address, port, weight, tags, meta);
// Service and Node come from Consul only.
type Member struct {
	// ID identifies the collector: its Consul service ID ("ID@node" when
	// the same service ID is registered on several nodes with different
	// addresses), or address:port for a static member. It is stable across
	// restarts of the collector.
	ID string `yaml:"id"`
	// Service is the Consul service name ("" for a static member).
	Service string `yaml:"-"`
	// Address and Port are where the collector's Prometheus listens.
	Address string `yaml:"address"`
	Port    int    `yaml:"port"`
	// Node is the Consul node the instance is registered on, and NodeMeta
	// that node's metadata.
	Node     string            `yaml:"-"`
	NodeMeta map[string]string `yaml:"-"`
	// Tags and Meta are the instance's Consul tags and metadata.
	Tags []string          `yaml:"tags"`
	Meta map[string]string `yaml:"meta"`
	// Weight is the collector's relative share of targets, from its
	// metadata (see ConsulOptions.WeightMeta); 0 means the default of 1.
	Weight uint32 `yaml:"weight"`
	// State is empty for a healthy member. A member that [Roster.Unhealthy]
	// lists has StateCritical, StateWarning, StateMaintenance or
	// StateSettling.
	State string `yaml:"-"`
}

// States of a member that is registered but not healthy.
const (
	StateCritical    = "critical"
	StateWarning     = "warning"
	StateMaintenance = "maintenance" // drained on purpose: consul maint
	// StateSettling: it passes its check again, but not yet for the
	// watcher's Settle (flap damping): still out of the ring.
	StateSettling = "settling"
)

// Roster is implemented by sources that also know the collectors that are
// registered (or configured) but not healthy: a collector that failed its
// check, or one put in maintenance to drain it, may still run and scrape.
// Unhealthy returns them, each with its State, as of the last set sent; a
// source sends its set again when only these change. A collector in
// neither the set nor Unhealthy is gone for good (deregistered).
type Roster interface {
	Unhealthy() []Member
}

// Label returns the value of metadata key k: the instance's own (service
// meta) when it has the key, else its node's; "" when neither has it.
func (m Member) Label(k string) string {
	if v, ok := m.Meta[k]; ok {
		return v
	}
	return m.NodeMeta[k]
}

// HostPort returns the collector's address and port joined as host:port.
func (m Member) HostPort() string { return net.JoinHostPort(m.Address, strconv.Itoa(m.Port)) }

// Source reports the healthy member set. Run sends a full, sorted set on out
// each time it changes (the first set included) and returns nil when ctx is
// done, or an error when it fails for good (a retry cannot mend it). It
// never closes out.
type Source interface {
	Run(ctx context.Context, out chan<- []Member) error
}

// equalMember compares members field by field.
func equalMember(a, b Member) bool {
	return a.ID == b.ID && a.Service == b.Service && a.Address == b.Address && a.Port == b.Port &&
		a.Node == b.Node && a.Weight == b.Weight && a.State == b.State && slices.Equal(a.Tags, b.Tags) && maps.Equal(a.Meta, b.Meta) &&
		maps.Equal(a.NodeMeta, b.NodeMeta)
}

// sameMembers reports whether two member sets, as a Source sends them, are
// the same.
func sameMembers(a, b []Member) bool { return slices.EqualFunc(a, b, equalMember) }

// sameSick reports whether two sets of unhealthy members are the same for
// a sharder: the same IDs, each drained or not alike. A member that flaps
// between failing and settling changes nothing: it is out of the ring
// either way.
func sameSick(a, b []Member) bool {
	return slices.EqualFunc(a, b, func(x, y Member) bool {
		return x.ID == y.ID && (x.State == StateMaintenance) == (y.State == StateMaintenance) && x.HostPort() == y.HostPort()
	})
}

// sortMembers sorts by ID and drops later duplicates of an ID (the same
// service ID on two nodes keeps a healthy one, then the first node in name
// order).
func sortMembers(ms []Member) []Member {
	slices.SortStableFunc(ms, func(a, b Member) int {
		if c := strings.Compare(a.ID, b.ID); c != 0 {
			return c
		}
		if (a.State == "") != (b.State == "") {
			return strings.Compare(a.State, b.State) // "" (healthy) first
		}
		return strings.Compare(a.Node, b.Node)
	})
	return slices.CompactFunc(ms, func(a, b Member) bool { return a.ID == b.ID })
}

// parseWeight reads a weight from metadata. ok is false for a value that is
// present but not an integer from 1 to shard.MaxWeight (a larger weight in
// Consul metadata is ignored with a warning; a static member with one is
// rejected).
func parseWeight(meta map[string]string, key string) (w uint32, ok bool) {
	v, present := meta[key]
	if !present || key == "" {
		return 0, true
	}
	n, err := strconv.ParseUint(v, 10, 32)
	if err != nil || n == 0 || n > weight.Max {
		return 0, false
	}
	return uint32(n), true
}
