package promshard

import (
	"strconv"
	"strings"

	"github.com/cespare/xxhash/v2"

	"github.com/promshard/promshard/internal/labels"
	"github.com/promshard/promshard/watch"
)

// fingerprint is what an assignment and the outputs take from the members,
// for one job: a job that spreads over domains reads the domain key, one
// balanced by series each collector's cap.
type fingerprint struct {
	spreadBy string
	caps     bool
}

// inputKey fingerprints what an assignment and the outputs depend on: the
// targets (their fingerprint, computed by the registry as it validated
// them: each group's source and labels, each target's labels, in any
// order, as Assign's result does not depend on it), the ring's members
// (IDs, weights, domains, caps, addresses) and the leavers (IDs and
// states). It is never 0.
func (f fingerprint) inputKey(targets uint64, members, leavers []watch.Member) uint64 {
	return labels.Mix(targets^xxhash.Sum64String(f.memberKey(members)+"\x02"+f.memberKey(leavers))) | 1
}

// memberKey is what the assignment and the outputs take from members:
// IDs, weights, addresses, states and domains.
func (f fingerprint) memberKey(ms []watch.Member) string {
	var b strings.Builder
	for _, m := range ms {
		b.WriteString(m.ID + "\x00" + strconv.FormatUint(uint64(m.Weight), 10) + "\x00" + m.HostPort() + "\x00" + string(m.State))
		if f.spreadBy != "" {
			b.WriteString("\x00" + m.Label(f.spreadBy))
		}
		if f.caps {
			b.WriteString("\x00" + m.Label(MaxSeriesMeta))
		}
		b.WriteString("\x01")
	}
	return b.String()
}
