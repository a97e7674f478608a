package promshard

import (
	"strconv"
	"strings"

	"github.com/cespare/xxhash/v2"

	"github.com/promshard/promshard/internal/labels"
	"github.com/promshard/promshard/watch"
)

// inputKey fingerprints what an assignment and the outputs depend on: the
// targets (their fingerprint, computed by the registry as it validated
// them: each group's source and labels, each target's labels, in any
// order, as Assign's result does not depend on it), the ring's members
// (IDs, weights, domains, caps, addresses) and the leavers (IDs and states). It
// is never 0.
func (j *job) inputKey(targets uint64, members, leavers []watch.Member) uint64 {
	return labels.Mix(targets^xxhash.Sum64String(j.memberKey(members)+"\x02"+j.memberKey(leavers))) | 1
}

// memberKey is what the assignment and the outputs take from members:
// IDs, weights, addresses, states and domains.
func (j *job) memberKey(ms []watch.Member) string {
	var b strings.Builder
	for _, m := range ms {
		b.WriteString(m.ID + "\x00" + strconv.FormatUint(uint64(m.Weight), 10) + "\x00" + m.HostPort() + "\x00" + m.State)
		if j.cfg.SpreadBy != "" {
			b.WriteString("\x00" + m.Label(j.cfg.SpreadBy))
		}
		if j.balancing() {
			b.WriteString("\x00" + m.Label(MaxSeriesMeta))
		}
		b.WriteString("\x01")
	}
	return b.String()
}

// unchanged reports whether the loop may skip a reshard: the inputs are
// those of the last successful one, no hand-off is pending (its end
// changes the outputs), and nobody asked for the outputs to be written
// again (an audit repair rewrites files changed by hand; a copy that
// became leader writes what it computed as a standby).
func (j *job) unchanged(key uint64, reason string) bool {
	if key != j.lastKey || strings.Contains(reason, "audit repair") || strings.Contains(reason, "leader") {
		return false
	}
	j.hmu.Lock()
	defer j.hmu.Unlock()
	return len(j.pending) == 0
}
