package promsd_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/relabel"
	"go.uber.org/goleak"
	"go.yaml.in/yaml/v2"

	"github.com/promshard/promshard/watch"
	"github.com/promshard/promshard/watch/promsd"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreTopFunction("go.opencensus.io/stats/view.(*worker).start"),
		goleak.IgnoreAnyFunction("k8s.io/klog/v2.(*flushDaemon).run.func1"),
	)
}

// run starts a source of the given YAML configs and relabel rules and
// returns a function that waits until the member set and the roster are
// as wanted ("id" or "id:state", sorted).
func run(t *testing.T, sdYAML, relabelYAML string, opts promsd.Options) func(members, unhealthy []string) []watch.Member {
	t.Helper()
	cfgs, err := promsd.ParseConfigs([]byte(sdYAML))
	if err != nil {
		t.Fatal(err)
	}
	if relabelYAML != "" {
		if err := yaml.UnmarshalStrict([]byte(relabelYAML), &opts.Relabel); err != nil {
			t.Fatal(err)
		}
	}
	opts.Name, opts.Configs = "collectors", cfgs
	src, err := promsd.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	out := make(chan []watch.Member)
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx, out) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	var last []watch.Member
	return func(members, unhealthy []string) []watch.Member {
		t.Helper()
		ids := func(ms []watch.Member) []string {
			var out []string
			for _, m := range ms {
				out = append(out, strings.TrimSuffix(m.ID+":"+m.State, ":"))
			}
			return out
		}
		deadline := time.After(30 * time.Second)
		for {
			if slices.Equal(ids(last), members) && slices.Equal(ids(src.Unhealthy()), unhealthy) {
				return last
			}
			select {
			case last = <-out:
			case <-time.After(50 * time.Millisecond):
			case <-deadline:
				t.Fatalf("members %v, unhealthy %v; want %v and %v", ids(last), ids(src.Unhealthy()), members, unhealthy)
			}
		}
	}
}

// A one-file fleet definition, edited live: collectors join, leave, are
// drained and marked unhealthy by a label; relabelling names them and
// drops one.
func TestFileFleetEditedLive(t *testing.T) {
	fleet := filepath.Join(t.TempDir(), "fleet.yml")
	write := func(body string) {
		t.Helper()
		tmp := fleet + ".tmp"
		if err := os.WriteFile(tmp, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, fleet); err != nil {
			t.Fatal(err)
		}
	}
	entry := func(i int, labels string) string {
		return fmt.Sprintf("- targets: [\"127.0.0.1:%d\"]\n  labels: {name: c%d, zone: z%d%s}\n", 9090+i, i, i%2, labels)
	}
	write(entry(1, "") + entry(2, ", weight: \"3\"") + entry(3, "") + entry(9, ", role: test"))
	wait := run(t, "file_sd_configs: [{files: ["+fleet+"], refresh_interval: 1s}]", `
- {source_labels: [role], regex: test, action: drop}
- {source_labels: [name], target_label: __promshard_id__}
- {source_labels: [weight], target_label: __promshard_weight__}
- {source_labels: [drain], target_label: __promshard_drain__}
- {source_labels: [down], regex: "yes", target_label: __promshard_healthy__, replacement: "false"}
- {regex: "weight|drain|down|name", action: labeldrop}
`, promsd.Options{Settle: -1, UpdateInterval: 100 * time.Millisecond})
	ms := wait([]string{"c1", "c2", "c3"}, nil)
	if ms[1].Weight != 3 || ms[1].Meta["zone"] != "z0" || ms[0].HostPort() != "127.0.0.1:9091" || len(ms[0].Meta) != 1 {
		t.Fatalf("c2 weight %d zone %q, c1 at %s with meta %v", ms[1].Weight, ms[1].Meta["zone"], ms[0].HostPort(), ms[0].Meta)
	}
	write(entry(1, "") + entry(2, ", drain: \"true\"") + entry(3, ", down: \"yes\"") + entry(4, ""))
	wait([]string{"c1", "c4"}, []string{"c2:maintenance", "c3:critical"})
	write(entry(1, ""))
	wait([]string{"c1"}, nil)
}

// A collector that joins, or comes back, waits for Settle; one that
// leaves, leaves at once; with a probe, one that fails it is out.
func TestSettleAndProbe(t *testing.T) {
	fleet := filepath.Join(t.TempDir(), "fleet.json")
	write := func(addrs ...string) {
		t.Helper()
		body := `[{"targets": ["` + strings.Join(addrs, `", "`) + `"]}]`
		if err := os.WriteFile(fleet+".tmp", []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		os.Rename(fleet+".tmp", fleet)
	}
	write("127.0.0.1:1", "127.0.0.1:2")
	var down sync.Map
	probe := func(_ context.Context, m watch.Member) error {
		if _, ok := down.Load(m.ID); ok {
			return fmt.Errorf("%s is down", m.ID)
		}
		return nil
	}
	wait := run(t, "file_sd_configs: [{files: ["+fleet+"], refresh_interval: 1s}]", "",
		promsd.Options{Settle: 2 * time.Second, UpdateInterval: 100 * time.Millisecond, Probe: probe, ProbeInterval: 100 * time.Millisecond})
	wait([]string{"127.0.0.1:1", "127.0.0.1:2"}, nil)
	start := time.Now()
	write("127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3")
	wait([]string{"127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"}, nil)
	if took := time.Since(start); took < 2*time.Second {
		t.Fatalf("a new collector joined after %v, before Settle", took)
	}
	write("127.0.0.1:1", "127.0.0.1:3")
	wait([]string{"127.0.0.1:1", "127.0.0.1:3"}, nil)
	down.Store("127.0.0.1:3", true) // it fails its probe: out of the ring at once, still known
	wait([]string{"127.0.0.1:1"}, []string{"127.0.0.1:3:critical"})
	down.Delete("127.0.0.1:3") // it passes again: back after Settle
	wait([]string{"127.0.0.1:1", "127.0.0.1:3"}, nil)
}

// A relabel rule that cannot work is an error of New, naming it.
func TestBadRelabel(t *testing.T) {
	cfgs, _ := promsd.ParseConfigs([]byte("file_sd_configs: [{files: [x.yml]}]"))
	rc := &relabel.Config{Action: relabel.Replace, TargetLabel: "", Regex: relabel.MustNewRegexp("(.*)"), Separator: ";", Replacement: "$1"}
	if _, err := promsd.New(promsd.Options{Name: "x", Configs: cfgs, Relabel: []*relabel.Config{rc}}); err == nil || !strings.Contains(err.Error(), "Relabel[0]") {
		t.Fatalf("New: %v", err)
	}
	if _, err := promsd.ParseConfigs([]byte("nope_sd_configs: [{}]")); err == nil || !strings.Contains(err.Error(), "nope_sd_configs") {
		t.Fatalf("ParseConfigs: %v", err)
	}
}
