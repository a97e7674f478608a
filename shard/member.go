package shard

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/promshard/promshard/internal/weight"
)

// Errors returned by ring constructors and [Assign]. They are wrapped with
// the offending object; test for them with [errors.Is].
var (
	// ErrNoMembers means there is no member to assign targets to.
	ErrNoMembers = errors.New("shard: no members")
	// ErrEmptyMemberID means a member has an empty ID.
	ErrEmptyMemberID = errors.New("shard: empty member ID")
	// ErrDuplicateMember means two members share an ID.
	ErrDuplicateMember = errors.New("shard: duplicate member ID")
	// ErrNoAddress means a target has no __address__ label.
	ErrNoAddress = errors.New("shard: target has no __address__")
	// ErrUnknownKind means a ring kind is not one of [Kinds].
	ErrUnknownKind = errors.New("shard: unknown ring kind")
	// ErrWeight means a member's weight is above [MaxWeight].
	ErrWeight = fmt.Errorf("shard: weight above %d", MaxWeight)
)

// MaxWeight is the largest member weight a ring accepts. A rendezvous lookup
// costs one hash per unit of weight, so the bound keeps lookups and memory
// proportional to the members.
const MaxWeight = weight.Max

// Member is one collector as the ring sees it.
type Member struct {
	// ID identifies the member: a Consul service ID or an address:port,
	// never a bare host. It is what targets are hashed against, so it must be
	// stable across restarts of the member.
	ID string
	// Weight is the member's relative share of targets. Zero means 1; at
	// most [MaxWeight].
	// Weights are integers so that every machine computes the same result
	// without floating point.
	Weight uint32
	// Domain is the member's failure domain (a zone, a rack, a datacenter).
	// The R replicas of a target never share a domain while a member of
	// another domain can take one; only when there are fewer domains than R
	// do replicas share one. Members without a domain form the domain "",
	// so a fleet that is partly labelled treats the unlabelled members as
	// one more domain. When every member has the same domain (or none) the
	// assignment is exactly the ring's.
	Domain string
}

func (m Member) weight() uint32 {
	if m.Weight == 0 {
		return 1
	}
	return m.Weight
}

// normalize validates members and returns a copy sorted by ID.
func normalize(members []Member) ([]Member, error) {
	if len(members) == 0 {
		return nil, ErrNoMembers
	}
	out := slices.Clone(members)
	slices.SortFunc(out, func(a, b Member) int { return strings.Compare(a.ID, b.ID) })
	for i, m := range out {
		if m.ID == "" {
			return nil, fmt.Errorf("member %d (weight %d): %w", i, m.Weight, ErrEmptyMemberID)
		}
		if m.Weight > MaxWeight {
			return nil, fmt.Errorf("member %q weight %d: %w", m.ID, m.Weight, ErrWeight)
		}
		if i > 0 && out[i-1].ID == m.ID {
			return nil, fmt.Errorf("member %q: %w", m.ID, ErrDuplicateMember)
		}
	}
	return out, nil
}

// Kind names a ring implementation.
type Kind string

// The ring kinds. [KindRendezvous] is the default.
const (
	KindRendezvous Kind = "rendezvous"
	KindConsistent Kind = "consistent"
	KindHashring   Kind = "hashring"
)

// DefaultKind is the ring used when none is named, chosen by the package
// benchmarks.
const DefaultKind = KindRendezvous

// Kinds lists the ring kinds [New] accepts.
func Kinds() []Kind { return []Kind{KindRendezvous, KindConsistent, KindHashring} }

// New builds a ring of the given kind with default options. An empty kind
// means [DefaultKind].
func New(kind Kind, members []Member) (Ring, error) {
	switch kind {
	case "", KindRendezvous:
		return newRendezvous(members)
	case KindConsistent:
		return newConsistent(members, consistentOptions{})
	case KindHashring:
		return newHashring(members, hashringOptions{})
	default:
		return nil, fmt.Errorf("%w %q (want one of %v)", ErrUnknownKind, kind, Kinds())
	}
}

// ParseKind checks a ring kind given as text, as in a config file.
func ParseKind(s string) (Kind, error) {
	if s == "" {
		return DefaultKind, nil
	}
	for _, k := range Kinds() {
		if string(k) == s {
			return k, nil
		}
	}
	return "", fmt.Errorf("%w %q (want one of %v)", ErrUnknownKind, s, Kinds())
}
