package sdfile

import (
	"fmt"

	"github.com/cespare/xxhash/v2"
	"github.com/prometheus/common/model"

	"github.com/promshard/promshard/internal/labels"
	"github.com/promshard/promshard/internal/tstore"
)

// Encoder is Marshal for one file written again and again (a collector's
// share after each reshard). It remembers where each group's text was in
// its last output, and a group with the same source, the same labels and
// the same targets as then is copied from that output (handed back by the
// caller: the file it wrote) rather than encoded again. Targets are
// compared by identity, not read ([tstore.SameTargets]): groups, their
// addresses and label sets travel shared and read-only, and the encoder
// keeps those it compares against alive, so that an identity is never
// another's. When one collector of a
// hundred leaves, each other's file gains a target in about one group in
// ten, and the rest is a copy. Its output is Marshal's, byte for byte. An
// Encoder is not safe for concurrent use; the zero value writes JSON.
type Encoder struct {
	Format Format

	sum   uint64 // of the last output, to know it when it is handed back
	size  int
	spans map[groupKey]span
}

// groupKey names a group within one file: its source, its labels map, and
// which of the groups with both it is.
type groupKey struct {
	source string
	labels uintptr
	nth    int
}

// span is where a group's text was in the last output.
type span struct {
	group    *tstore.Group // the one encoded, kept so that its identities stay its own
	labels   model.LabelSet
	from, to int
}

// Marshal renders groups as Marshal does. last is the Encoder's last
// output if the caller has it (the file as written, read back), else nil:
// it is used only if it is that output, checked by size and hash, so the
// Encoder does not keep a copy of every file in memory.
func (e *Encoder) Marshal(groups []*tstore.Group, last []byte) ([]byte, error) {
	f := e.Format
	if f == "" {
		f = JSON
	}
	if f != JSON && f != YAML {
		return nil, fmt.Errorf("format %q: want %q or %q", f, JSON, YAML)
	}
	prev := e.spans
	if len(last) != e.size || xxhash.Sum64(last) != e.sum {
		prev = nil
	}
	size := len(last) + len(last)/8 + 64
	if len(last) == 0 { // a first write: about a line per target
		for _, g := range groups {
			if g != nil {
				size += 128 + 32*len(g.Targets)
			}
		}
	}
	out := make([]byte, 0, size)
	if f == JSON {
		out = append(out, "[\n"...)
	}
	spans := make(map[groupKey]span, len(groups))
	nth := make(map[groupKey]int, len(groups))
	var entries []entry
	wrote := false
	for gi, g := range groups {
		if g == nil || len(g.Targets) == 0 {
			continue
		}
		k := groupKey{source: g.Source, labels: labels.Identity(g.Labels)}
		k.nth = nth[k]
		nth[groupKey{source: k.source, labels: k.labels}]++
		if f == JSON && wrote {
			out = append(out, ",\n"...)
		}
		from := len(out)
		if s, ok := prev[k]; ok && tstore.SameTargets(s.group, g) {
			out = append(out, last[s.from:s.to]...)
		} else {
			var err error
			if entries, err = groupEntries(entries[:0], gi, g); err != nil {
				return nil, err
			}
			if f == JSON {
				out = appendJSONEntries(out, entries)
			} else {
				out = appendYAMLEntries(out, entries)
			}
		}
		spans[k] = span{group: g, labels: g.Labels, from: from, to: len(out)}
		wrote = true
	}
	switch {
	case !wrote:
		out = append(out[:0], "[]\n"...)
	case f == JSON:
		out = append(out, "\n]\n"...)
	}
	e.sum, e.size, e.spans = xxhash.Sum64(out), len(out), spans
	return out, nil
}
