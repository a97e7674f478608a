package promshard

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery/targetgroup"

	"github.com/promshard/promshard/filesd"
	"github.com/promshard/promshard/internal/tstore"
	"github.com/promshard/promshard/shard"
	"github.com/promshard/promshard/targets"
	"github.com/promshard/promshard/watch"
)

// nopOutput accepts every assignment and writes nothing: the benchmark
// measures the Sharder, not a disk.
// nopOutput writes nothing. It takes the compact groups, as the module's
// own outputs do, so that a benchmark measures the Sharder's pass and not a
// conversion for an output that writes nothing (a user's Output gets
// targetgroup.Group values made for the call: BenchmarkOutputBorder).
type nopOutput struct{}

func (nopOutput) Update(context.Context, map[string][]*targetgroup.Group) ([]string, error) {
	return nil, nil
}

func (nopOutput) UpdateCompact(context.Context, map[string][]*tstore.Group) ([]string, error) {
	return nil, nil
}

// userOutput is an Output of a user's: it takes groups as
// targetgroup.Group values only.
type userOutput struct{}

func (userOutput) Update(context.Context, map[string][]*targetgroup.Group) ([]string, error) {
	return nil, nil
}

// BenchmarkOutputBorder measures what an output of a user's costs a pass
// at 1M targets over 100 collectors: the groups are made into
// targetgroup.Group values (a label set per target) for it.
func BenchmarkOutputBorder(b *testing.B) {
	gs, ms := scalePool(1000, 1000, 100, func(int) model.LabelSet { return model.LabelSet{"env": "prod"} })
	sms := make([]shard.Member, len(ms))
	for i, m := range ms {
		sms[i] = shard.Member{ID: m.ID}
	}
	ring, err := shard.New(shard.DefaultKind, sms)
	if err != nil {
		b.Fatal(err)
	}
	asg, err := shard.Assign(ring, gs, shard.Options{})
	if err != nil {
		b.Fatal(err)
	}
	outs := newOutputs([]Output{userOutput{}})
	b.ReportAllocs()
	for b.Loop() {
		if _, err := outs.update(context.Background(), asg.Groups); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkReshardScale reshards 1M targets (1,000 groups of 1,000) over
// 100 collectors, in the loop's own pass: the first reshard, an unchanged
// one (the refresh timer: skipped), and one after a collector left. It
// reports milliseconds per phase, the live heap per target after them, and
// (on Linux) the process's RSS per target after them and at its peak
// during them, the input included.
func BenchmarkReshardScale(b *testing.B) { reshardScale(b, false) }

// BenchmarkReshardScaleFiles is BenchmarkReshardScale writing a file_sd
// file per collector (filesd.Dir, atomic with fsync) in a temp directory:
// from the member change to every changed file written.
func BenchmarkReshardScaleFiles(b *testing.B) { reshardScale(b, true) }

func reshardScale(b *testing.B, files bool) {
	const groups, per, collectors = 1000, 1000, 100
	gs, ms := scalePool(groups, per, collectors, func(i int) model.LabelSet {
		return model.LabelSet{"env": "prod", "team": model.LabelValue(fmt.Sprint("t", i%10))}
	})
	ctx := context.Background()
	var full, unchanged, forced, left time.Duration
	var heap, peak, rss uint64
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before) // the input: 1M label sets (Go maps), as a provider holds them
	// pass runs the four phases on a new Sharder and returns it.
	pass := func(d *[4]time.Duration) *Sharder {
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
		for i, reason := range []Reason{reasonTimer, reasonTimer, reasonRepair, reasonTimer} {
			if i == 3 {
				j.setMembers(ms[1:], nil)
			}
			start := time.Now()
			j.fetch(ctx) // the loop's refresh: fetch and validate
			if _, err := j.reshard(ctx, reason, false); err != nil {
				b.Fatal(err)
			}
			d[i] += time.Since(start)
		}
		if !j.snap.Last.Diff.Changed() {
			b.Fatal("a collector left and nothing moved")
		}
		return s
	}
	var d [4]time.Duration // first, unchanged (skipped), unchanged not skipped (an audit repair), one left
	for b.Loop() {
		s := pass(&d)
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		heap += m.HeapAlloc
		runtime.KeepAlive(s)
	}
	full, unchanged, forced, left = d[0], d[1], d[2], d[3]
	// Once more, outside the timing: the process's peak RSS during a pass
	// and its RSS after, with the memory freed before and after returned.
	runtime.GC()
	debug.FreeOSMemory()
	resetPeakRSS()
	s := pass(&[4]time.Duration{})
	peak = procStatus("VmHWM")
	runtime.GC()
	debug.FreeOSMemory()
	rss = procStatus("VmRSS")
	runtime.KeepAlive(s)
	n := float64(b.N)
	b.ReportMetric(float64(full.Milliseconds())/n, "full-ms")
	b.ReportMetric(float64(unchanged.Milliseconds())/n, "unchanged-ms")
	b.ReportMetric(float64(forced.Milliseconds())/n, "unchanged-unskipped-ms")
	b.ReportMetric(float64(left.Milliseconds())/n, "one-left-ms")
	b.ReportMetric(float64(heap)/n/groups/per, "heap-B/target")
	b.ReportMetric(float64(before.HeapAlloc)/groups/per, "input-B/target")
	b.ReportMetric((float64(heap)/n-float64(before.HeapAlloc))/groups/per, "sharder-B/target")
	if peak > 0 {
		b.ReportMetric(float64(rss)/groups/per, "rss-B/target")
		b.ReportMetric(float64(peak)/groups/per, "peak-rss-B/target")
	}
}

// scalePool is the benchmarks' pool: groups of per targets (group i with
// labels(i)) and collectors members.
func scalePool(groups, per, collectors int, labels func(i int) model.LabelSet) (targets.Static, []watch.Member) {
	var gs targets.Static
	for i := range groups {
		g := &targetgroup.Group{Source: fmt.Sprint("src-", i), Labels: labels(i)}
		for k := range per {
			g.Targets = append(g.Targets, model.LabelSet{model.AddressLabel: model.LabelValue(fmt.Sprintf("10.%d.%d.%d:9100", i/250, i%250, k%250+k/250))})
		}
		gs = append(gs, g)
	}
	ms := make([]watch.Member, collectors)
	for i := range ms {
		ms[i] = watch.Member{ID: fmt.Sprintf("collector-%03d", i), Address: "10.200.0.1", Port: 9090 + i}
	}
	return gs, ms
}

// resetPeakRSS starts the process's peak RSS (VmHWM) anew, where Linux
// allows it.
func resetPeakRSS() { _ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) }

// procStatus reads a size in bytes from /proc/self/status (0 elsewhere).
func procStatus(field string) uint64 {
	b, _ := os.ReadFile("/proc/self/status")
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// BenchmarkHandoffScale is a scale-out with hand-offs on, at 1M targets
// (1,000 groups of 1,000): 100 collectors, then a 101st joins, so every
// collector hands about 1% of its targets over to it. It reports the
// joining pass (the plan compares what the outputs hold with the new
// assignment, target by target) and the heap it allocated.
func BenchmarkHandoffScale(b *testing.B) {
	const groups, per, collectors = 1000, 1000, 101
	gs, ms := scalePool(groups, per, collectors, func(int) model.LabelSet { return model.LabelSet{"env": "prod"} })
	ctx := context.Background()
	var join time.Duration
	var alloc uint64
	for b.Loop() {
		s, err := New([]Job{{Name: "node", Targets: gs, TargetOptions: targets.JobOptions{MaxDrop: 1},
			Outputs: []Output{nopOutput{}}}}, Options{Handoff: HandoffOptions{Enabled: true}})
		if err != nil {
			b.Fatal(err)
		}
		j := s.byName["node"]
		j.setMembers(ms[:collectors-1], nil)
		j.fetch(ctx)
		if _, err := j.reshard(ctx, reasonTimer, false); err != nil {
			b.Fatal(err)
		}
		j.setMembers(ms, nil)
		var m0, m1 runtime.MemStats
		runtime.ReadMemStats(&m0)
		start := time.Now()
		if _, err := j.reshard(ctx, reasonMembers, false); err != nil {
			b.Fatal(err)
		}
		join += time.Since(start)
		runtime.ReadMemStats(&m1)
		alloc += m1.TotalAlloc - m0.TotalAlloc
		if j.hand.count() == 0 {
			b.Fatal("a collector joined and nothing was handed over")
		}
	}
	b.ReportMetric(float64(join.Milliseconds())/float64(b.N), "join-ms")
	b.ReportMetric(float64(alloc)/float64(b.N)/groups/per, "join-alloc-B/target")
}
