package shard

import (
	"sync"

	"github.com/cespare/xxhash/v2"

	"github.com/promshard/promshard/internal/labels"
)

// Ring maps a key hash to the members that own it. Implementations are
// immutable and safe for concurrent use; build a new ring when the member
// set changes.
type Ring interface {
	// Kind names the implementation.
	Kind() Kind
	// Members returns the ring's members sorted by ID. Callers must not
	// modify the slice.
	Members() []Member
	// Owners appends to dst the indexes, into Members, of the
	// min(n, len(Members)) distinct members that own key, most preferred
	// first, and returns the extended slice. It does not allocate when dst
	// has room.
	Owners(key uint64, n int, dst []int) []int
}

// Hash is the key hash every ring is fed with: xxhash64 of the key's bytes,
// the same on every machine.
func Hash(key string) uint64 { return xxhash.Sum64String(key) }

// Lookup returns the members that own key in r, as [Assign] picks them:
// most preferred first, in distinct failure domains where it can.
func Lookup(r Ring, key string, replicas int) []Member {
	if replicas < 1 {
		replicas = 1
	}
	ms := r.Members()
	plain := replicas == 1 || !manyDomains(ms) // the ring's own order: no spread to compute
	if rv, ok := r.(*rendezvous); ok && plain {
		var arr [8]int // the default ring, called directly: its scratch stays on the stack
		return membersAt(ms, rv.Owners(Hash(key), replicas, arr[:0]))
	}
	buf := lookupBufs.Get().(*[]int)
	defer lookupBufs.Put(buf)
	if plain {
		*buf = r.Owners(Hash(key), replicas, (*buf)[:0])
	} else {
		*buf, _ = newSpread(ms).owners(r, Hash(key), replicas, (*buf)[:0], nil)
	}
	return membersAt(ms, *buf)
}

// membersAt are the members of ms at the indexes idx, in a new slice.
func membersAt(ms []Member, idx []int) []Member {
	out := make([]Member, len(idx))
	for i, j := range idx {
		out[i] = ms[j]
	}
	return out
}

// lookupBufs are the scratch slices of Lookup.
var lookupBufs = sync.Pool{New: func() any { return new([]int) }}

// manyDomains reports whether ms span more than one failure domain.
func manyDomains(ms []Member) bool {
	for _, m := range ms {
		if m.Domain != ms[0].Domain {
			return true
		}
	}
	return false
}

// mix is splitmix64's finalizer, cheap enough to run once per member per
// lookup.
func mix(x uint64) uint64 { return labels.Mix(x) }
