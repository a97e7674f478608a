package shard

import (
	"encoding/binary"
	"fmt"

	"github.com/serialx/hashring"
)

// hashringOptions configures newHashring. The zero value is usable.
type hashringOptions struct {
	// PointsPerWeight is the number of points a member of weight 1 places on
	// the ring. github.com/serialx/hashring places one point per node unless
	// told otherwise, which balances badly. Default 256.
	PointsPerWeight int
}

// serialxRing adapts github.com/serialx/hashring (md5 based consistent
// hashing) to [Ring].
type serialxRing struct {
	members []Member
	ring    *hashring.HashRing
	byID    map[string]int
}

var _ Ring = (*serialxRing)(nil)

// newHashring builds a consistent-hash ring on github.com/serialx/hashring
// with PointsPerWeight×weight points per member. Every lookup formats the
// key and runs md5, which allocates.
func newHashring(members []Member, opts hashringOptions) (Ring, error) {
	ms, err := normalize(members)
	if err != nil {
		return nil, err
	}
	ppw := opts.PointsPerWeight
	if ppw == 0 {
		ppw = 256
	}
	if ppw < 0 {
		return nil, fmt.Errorf("shard: hashringOptions.PointsPerWeight %d: must be positive", ppw)
	}
	weights := make(map[string]int, len(ms))
	byID := make(map[string]int, len(ms))
	for i, m := range ms {
		weights[m.ID] = ppw * int(m.weight())
		byID[m.ID] = i
	}
	return &serialxRing{members: ms, ring: hashring.NewWithWeights(weights), byID: byID}, nil
}

func (s *serialxRing) Kind() Kind        { return KindHashring }
func (s *serialxRing) Members() []Member { return s.members }

func (s *serialxRing) Owners(key uint64, n int, dst []int) []int {
	if n <= 0 {
		return dst
	}
	n = min(n, len(s.members))
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], key)
	nodes, _ := s.ring.GetNodes(string(b[:]), n)
	for _, id := range nodes {
		dst = append(dst, s.byID[id])
	}
	return dst
}
