package promshard

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery/targetgroup"

	"github.com/promshard/promshard/filesd"
	"github.com/promshard/promshard/targets"
	"github.com/promshard/promshard/watch"
)

// nopOutput accepts every assignment and writes nothing: the benchmark
// measures the Sharder, not a disk.
type nopOutput struct{}

func (nopOutput) Update(context.Context, map[string][]*targetgroup.Group) ([]string, error) {
	return nil, nil
}

// BenchmarkReshardScale reshards 1M targets (1,000 groups of 1,000) over
// 100 collectors, in the loop's own pass: the first reshard, an unchanged
// one (the refresh timer: skipped), and one after a collector left. It
// reports milliseconds per phase and the live heap per target after them.
func BenchmarkReshardScale(b *testing.B) { reshardScale(b, false) }

// BenchmarkReshardScaleFiles is BenchmarkReshardScale writing a file_sd
// file per collector (filesd.Dir, atomic with fsync) in a temp directory:
// from the member change to every changed file written.
func BenchmarkReshardScaleFiles(b *testing.B) { reshardScale(b, true) }

func reshardScale(b *testing.B, files bool) {
	const groups, per, collectors = 1000, 1000, 100
	var gs targets.Static
	for i := range groups {
		g := &targetgroup.Group{Source: fmt.Sprint("src-", i), Labels: model.LabelSet{"env": "prod", "team": model.LabelValue(fmt.Sprint("t", i%10))}}
		for k := range per {
			g.Targets = append(g.Targets, model.LabelSet{model.AddressLabel: model.LabelValue(fmt.Sprintf("10.%d.%d.%d:9100", i/250, i%250, k%250+k/250))})
		}
		gs = append(gs, g)
	}
	ms := make([]watch.Member, collectors)
	for i := range ms {
		ms[i] = watch.Member{ID: fmt.Sprintf("collector-%03d", i), Address: "10.200.0.1", Port: 9090 + i}
	}
	ctx := context.Background()
	var full, unchanged, forced, left time.Duration
	var heap uint64
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before) // the input: 1M label sets (Go maps), as a provider holds them
	for b.Loop() {
		var out Output = nopOutput{}
		if files {
			dir, err := filesd.NewDir(filesd.DirOptions{Dir: b.TempDir()})
			if err != nil {
				b.Fatal(err)
			}
			out = dir
		}
		s, err := New([]Job{{Name: "node", Targets: gs, TargetOptions: targets.JobOptions{MaxDrop: 1},
			Outputs: []Output{out}}}, Options{})
		if err != nil {
			b.Fatal(err)
		}
		j := s.byName["node"]
		j.setMembers(ms, nil)
		phase := func(d *time.Duration, reason string) {
			start := time.Now()
			if _, err := j.reshard(ctx, reason, false); err != nil {
				b.Fatal(err)
			}
			*d += time.Since(start)
		}
		phase(&full, "bench")
		phase(&unchanged, "bench")
		phase(&forced, "audit repair") // the same inputs, not skipped: what every refresh cost before
		j.setMembers(ms[1:], nil)
		phase(&left, "bench")
		if !j.snap.Last.Diff.Changed() {
			b.Fatal("a collector left and nothing moved")
		}
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		heap += m.HeapAlloc
		runtime.KeepAlive(s)
	}
	n := float64(b.N)
	b.ReportMetric(float64(full.Milliseconds())/n, "full-ms")
	b.ReportMetric(float64(unchanged.Milliseconds())/n, "unchanged-ms")
	b.ReportMetric(float64(forced.Milliseconds())/n, "unchanged-unskipped-ms")
	b.ReportMetric(float64(left.Milliseconds())/n, "one-left-ms")
	b.ReportMetric(float64(heap)/n/groups/per, "heap-B/target")
	b.ReportMetric(float64(before.HeapAlloc)/groups/per, "input-B/target")
	b.ReportMetric((float64(heap)/n-float64(before.HeapAlloc))/groups/per, "sharder-B/target")
}
