package shard

import "slices"

// spread is the failure-domain view of a ring's members: it turns the
// ring's preference order for a key into owners that do not share a domain
// while another domain can take a replica.
type spread struct {
	dom   []int32  // domain index of each member, by position in Members
	names []string // domain names by index
	// scratch for rings that pick per domain in one pass: each domain's
	// best score and member
	best []uint64
	who  []int32
	// the seeds of each domain's members, for the ring slotsOf (see
	// rendezvous.domainSlots)
	slots   [][]int32
	slotsOf Ring
}

// spreadRing is a ring that can pick owners over domains in one pass.
// ok is false when it cannot (fewer domains than reps); the caller then
// walks the ring's order.
type spreadRing interface {
	// prefer is the domain whose best member takes the first replica, or
	// -1.
	spreadOwners(key uint64, reps int, prefer int32, s *spread, dst []int) (owners []int, ok bool)
}

func newSpread(ms []Member) *spread {
	idx := make(map[string]int32)
	s := &spread{dom: make([]int32, len(ms))}
	for i, m := range ms {
		d, ok := idx[m.Domain]
		if !ok {
			d = int32(len(s.names))
			idx[m.Domain] = d
			s.names = append(s.names, m.Domain)
		}
		s.dom[i] = d
	}
	s.best = make([]uint64, len(s.names))
	s.who = make([]int32, len(s.names))
	return s
}

// domains is the number of distinct failure domains.
func (s *spread) domains() int { return len(s.names) }

// owners appends to dst the indexes of the reps members that own key, in
// the order picked: walk the ring's preference order and take a member
// unless its domain already holds a replica; when fewer domains than reps
// exist, fill up with the best-ranked members not taken. With one domain
// (or one replica) that is the ring's own order. buf is scratch space,
// returned for reuse.
//
// The ring is asked for a few more members than reps first; only when those
// do not cover enough domains is it asked for all of them, so the common
// case costs one lookup.
func (s *spread) owners(r Ring, key uint64, reps int, dst, buf []int) (owners, scratch []int) {
	if len(s.names) <= 1 || reps <= 1 {
		return r.Owners(key, reps, dst), buf
	}
	if sr, ok := r.(spreadRing); ok {
		if out, ok := sr.spreadOwners(key, reps, -1, s, dst); ok {
			return out, buf
		}
	}
	n := len(s.dom)
	want := min(reps, len(s.names))
	start := len(dst)
	for k := min(n, max(8, 2*reps)); ; k = n {
		buf = r.Owners(key, k, buf[:0])
		dst = s.fill(buf, dst[:start], start, reps, want)
		if len(dst)-start < reps && k < n {
			continue // the first k members cover too few domains
		}
		return dst, buf
	}
}

// fill appends to dst[start:] (which may hold owners already) members of
// the preference order buf: first up to want in distinct domains, then any,
// up to reps in all. When buf is shorter than every member and fewer than
// want domains were found, the result has fewer than reps owners: the
// caller asks the ring for all of them.
func (s *spread) fill(buf, dst []int, start, reps, want int) []int {
	for _, m := range buf {
		if len(dst)-start == want {
			break
		}
		if !s.held(dst[start:], m) {
			dst = append(dst, m)
		}
	}
	if len(dst)-start < want && len(buf) < len(s.dom) {
		return dst[:start] // too few domains in buf: ask for all
	}
	for _, m := range buf {
		if len(dst)-start == reps {
			break
		}
		if !slices.Contains(dst[start:], m) {
			dst = append(dst, m)
		}
	}
	return dst
}

// preferring is owners with the first replica on the best-ranked member
// of domain prefer (an index into the domains; -1: none), when that
// domain has a member; the other replicas are picked as owners picks them,
// in other domains while another can take one. A member that leaves moves
// only the targets it owned: the choice is a function of the ring's
// preference order alone.
func (s *spread) preferring(r Ring, key uint64, reps int, prefer int32, dst, buf []int) (owners, scratch []int) {
	if prefer < 0 || len(s.names) <= 1 {
		return s.owners(r, key, reps, dst, buf)
	}
	if sr, ok := r.(spreadRing); ok {
		if out, ok := sr.spreadOwners(key, reps, prefer, s, dst); ok {
			return out, buf
		}
	}
	n := len(s.dom)
	want := min(reps, len(s.names))
	start := len(dst)
	for k := min(n, max(8, 2*reps)); ; k = n {
		buf = r.Owners(key, k, buf[:0])
		i := slices.IndexFunc(buf, func(m int) bool { return s.dom[m] == prefer })
		if i < 0 {
			if k < n {
				continue
			}
			return s.owners(r, key, reps, dst[:start], buf) // no member there: the ring decides
		}
		dst = append(dst[:start], buf[i])
		if dst = s.fill(buf, dst, start, reps, want); len(dst)-start < reps && k < n {
			continue
		}
		return dst, buf
	}
}

// domainOf is the index of the domain named d, or -1.
func (s *spread) domainOf(d string) int32 {
	for i, name := range s.names {
		if name == d {
			return int32(i)
		}
	}
	return -1
}

// held reports whether a member of m's domain is among picked.
func (s *spread) held(picked []int, m int) bool {
	for _, p := range picked {
		if s.dom[p] == s.dom[m] {
			return true
		}
	}
	return false
}
