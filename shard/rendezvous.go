package shard

import (
	"math/bits"
	"slices"
)

// rendezvous is highest-random-weight hashing: every member scores every
// key, the highest scores own it. A member of weight w takes part with w
// independent seeds and scores the best of them, which gives it a w/total
// share with integer arithmetic only.
type rendezvous struct {
	members []Member
	seeds   []uint64 // one per unit of weight
	seeds2  []uint64 // a second, independent seed per unit of weight
	owner   []int32  // member index of each seed
	uniform bool     // every member has one seed
}

var _ Ring = (*rendezvous)(nil)

// newRendezvous builds a rendezvous (highest-random-weight) ring. It costs
// one hash per member to build. A lookup costs one mix per unit of weight
// when weights differ, one per member when they are all equal.
func newRendezvous(members []Member) (Ring, error) {
	ms, err := normalize(members)
	if err != nil {
		return nil, err
	}
	r := &rendezvous{members: ms, uniform: true}
	w0 := ms[0].weight()
	for _, m := range ms {
		if m.weight() != w0 {
			r.uniform = false
		}
	}
	for i, m := range ms {
		base := Hash(m.ID)
		n := uint32(1)
		if !r.uniform {
			n = m.weight()
		}
		for v := range n {
			r.seeds = append(r.seeds, mix(base+uint64(v)*0x9e3779b97f4a7c15))
			r.seeds2 = append(r.seeds2, mix(^base+uint64(v)*0xc2b2ae3d27d4eb4f))
			r.owner = append(r.owner, int32(i))
		}
	}
	return r, nil
}

func (r *rendezvous) Kind() Kind        { return KindRendezvous }
func (r *rendezvous) Members() []Member { return r.members }

func (r *rendezvous) Owners(key uint64, n int, dst []int) []int {
	if n <= 0 {
		return dst
	}
	if n == 1 && r.uniform {
		best, bi := uint64(0), 0
		s2 := r.seeds2[:len(r.seeds)]
		for i, s := range r.seeds {
			if v := score(key, s, s2[i]); v > best {
				best, bi = v, i
			}
		}
		return append(dst, bi)
	}
	if n > len(r.members) {
		n = len(r.members)
	}
	if n <= 8 {
		return r.topSmall(key, n, dst)
	}
	return r.topSort(key, n, dst)
}

// topSmall keeps the n best distinct members in a fixed array: no allocation.
func (r *rendezvous) topSmall(key uint64, n int, dst []int) []int {
	var best [8]uint64
	var who [8]int32
	k := 0
	for i, s := range r.seeds {
		v, m := score(key, s, r.seeds2[i]), r.owner[i]
		// A member with several seeds: keep only its best score.
		dup := -1
		for j := range k {
			if who[j] == m {
				dup = j
				break
			}
		}
		if dup >= 0 {
			if v <= best[dup] {
				continue
			}
			copy(best[dup:k-1], best[dup+1:k])
			copy(who[dup:k-1], who[dup+1:k])
			k--
		}
		if k == n && v <= best[n-1] {
			continue
		}
		j := min(k, n-1)
		for j > 0 && best[j-1] < v {
			best[j], who[j] = best[j-1], who[j-1]
			j--
		}
		best[j], who[j] = v, m
		if k < n {
			k++
		}
	}
	for j := range k {
		dst = append(dst, int(who[j]))
	}
	return dst
}

// topSort handles n > 8: score every member, sort.
func (r *rendezvous) topSort(key uint64, n int, dst []int) []int {
	best := make([]uint64, len(r.members))
	for i, s := range r.seeds {
		if v := score(key, s, r.seeds2[i]); v > best[r.owner[i]] {
			best[r.owner[i]] = v
		}
	}
	idx := make([]int, len(r.members))
	for i := range idx {
		idx[i] = i
	}
	slices.SortFunc(idx, func(a, b int) int {
		switch {
		case best[a] > best[b]:
			return -1
		case best[a] < best[b]:
			return 1
		}
		return a - b
	})
	return append(dst, idx[:n]...)
}

// spreadOwners takes each domain's best-scoring member in one pass and
// returns the reps best of those, best first: the same members a walk of
// the whole order would pick, at the cost of one lookup. It declines when
// there are fewer domains than reps.
func (r *rendezvous) spreadOwners(key uint64, reps int, prefer int32, s *spread, dst []int) ([]int, bool) {
	if len(s.names) < reps {
		return dst, false
	}
	if reps == 1 && prefer >= 0 && int(prefer) < len(s.names) {
		if slots := r.domainSlots(s)[prefer]; len(slots) > 0 {
			best, who := uint64(0), int32(-1)
			for _, i := range slots {
				if v := score(key, r.seeds[i], r.seeds2[i]); who < 0 || v > best {
					best, who = v, r.owner[i]
				}
			}
			return append(dst, int(who)), true
		}
	}
	for d := range s.who {
		s.who[d] = -1
	}
	for i, sd := range r.seeds {
		v, m := score(key, sd, r.seeds2[i]), r.owner[i]
		if d := s.dom[m]; s.who[d] < 0 || v > s.best[d] {
			s.best[d], s.who[d] = v, m
		}
	}
	if prefer >= 0 && s.who[prefer] >= 0 { // the preferred domain's best takes the first replica
		// (with one replica, only that domain's seeds are scored)
		dst = append(dst, int(s.who[prefer]))
		s.who[prefer] = -1
		reps--
	}
	for range reps {
		bd := -1
		for d, m := range s.who {
			if m >= 0 && (bd < 0 || s.best[d] > s.best[bd] || s.best[d] == s.best[bd] && m < s.who[bd]) {
				bd = d
			}
		}
		dst = append(dst, int(s.who[bd]))
		s.who[bd] = -1
	}
	return dst, true
}

var _ spreadRing = (*rendezvous)(nil)

// domainSlots lists, per domain of s, the indexes of the seeds of its
// members, in seed order, built once per spread and ring.
func (r *rendezvous) domainSlots(s *spread) [][]int32 {
	if s.slotsOf != r {
		s.slots = make([][]int32, len(s.names))
		for i, m := range r.owner {
			d := s.dom[m]
			s.slots[d] = append(s.slots[d], int32(i))
		}
		s.slotsOf = r
	}
	return s.slots
}

// score is a member's score for a key: a 64×64→128-bit multiply of the key
// under two member seeds, folded (the wyhash mix). One multiply instruction
// per member; the key is already an xxhash output, so it is well mixed.
func score(key, s1, s2 uint64) uint64 {
	hi, lo := bits.Mul64(key^s1, key^s2)
	return hi ^ lo
}
