package filesd

import (
	"fmt"
	"path/filepath"
	"testing"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery/targetgroup"
)

func benchGroups(n int) []*targetgroup.Group {
	var gs []*targetgroup.Group
	for j := range 100 {
		g := &targetgroup.Group{Source: fmt.Sprintf("src/%d", j), Labels: model.LabelSet{"job": "node", "dc": model.LabelValue(fmt.Sprint("dc", j%4))}}
		for i := range n / 100 {
			g.Targets = append(g.Targets, model.LabelSet{model.AddressLabel: model.LabelValue(fmt.Sprintf("10.%d.%d.%d:9100", j, i/250, i%250))})
		}
		gs = append(gs, g)
	}
	return gs
}

// BenchmarkWriteFile writes a 100k-target file (content alternating, so
// every write is real) and runs the no-change check (same content).
func BenchmarkWriteFile(b *testing.B) {
	gs1, gs2 := benchGroups(100_000), benchGroups(100_000)
	gs2[0].Targets = gs2[0].Targets[1:]
	for _, f := range []Format{JSON, YAML} {
		p := filepath.Join(b.TempDir(), "c."+string(f))
		b.Run("format="+string(f)+"/write", func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				gs := gs1
				if i%2 == 1 {
					gs = gs2
				}
				i++
				if changed, err := WriteFile(p, gs, WriteOptions{}); err != nil || !changed {
					b.Fatal(changed, err)
				}
			}
		})
		b.Run("format="+string(f)+"/unchanged", func(b *testing.B) {
			if _, err := WriteFile(p, gs2, WriteOptions{}); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if changed, err := WriteFile(p, gs2, WriteOptions{}); err != nil || changed {
					b.Fatal(changed, err)
				}
			}
		})
	}
}
