package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/promshard/promshard/internal/testenv"
)

// Collectors from a one-file fleet definition (file_sd_configs), without
// Consul: edited live, a collector removed loses its file and its targets
// move; one added back gets its share again.
func TestFileFleetWithoutConsul(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the binary")
	}
	dir := t.TempDir()
	fleet := filepath.Join(dir, "fleet.yml")
	write := func(ids ...string) {
		t.Helper()
		var b strings.Builder
		for i, id := range ids {
			fmt.Fprintf(&b, "- targets: [\"127.0.0.1:%d\"]\n  labels: {name: %s}\n", 19090+i, id)
		}
		if err := os.WriteFile(fleet+".tmp", []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(fleet+".tmp", fleet); err != nil {
			t.Fatal(err)
		}
	}
	write("c1", "c2", "c3")
	// No Prometheus here: a move is no hand-off, and nobody is audited.
	cfg := writeConfig(t, fmt.Sprintf(`settle: 1ms
handoff: {mode: off}
audit: {disabled: true}
jobs:
  - name: node
    collectors:
      sd:
        file_sd_configs: [{files: [%q], refresh_interval: 1s}]
        relabel_configs:
          - {source_labels: [name], target_label: __promshard_id__}
    targets: {static: [{targets: [%s]}]}
    output: {dir: OUT}
`, fleet, strings.Join(testTargets(30), ", ")))
	out := filepath.Join(filepath.Dir(cfg), "out")
	if code, stdout, stderr := runCmd("check", "config", "--config.file", cfg); code != exitOK {
		t.Fatalf("check config: exit %d\n%s\n%s", code, stdout, stderr)
	}
	startBinary(t, buildBinary(t), "--config.file", cfg, "--web.listen-address", fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)))
	holds := func(want map[string]bool) error {
		total := 0
		for _, id := range []string{"c1", "c2", "c3"} {
			_, err := os.Stat(filepath.Join(out, id+".json"))
			if present := err == nil; present != want[id] {
				return fmt.Errorf("%s.json present %v, want %v", id, present, want[id])
			}
			n := fileTargets(t, filepath.Join(out, id+".json"))
			if want[id] && n == 0 {
				return fmt.Errorf("%s holds no target", id)
			}
			total += n
		}
		if total != 30 {
			return fmt.Errorf("%d targets in the files, want 30", total)
		}
		return nil
	}
	wait := func(want map[string]bool) {
		t.Helper()
		if err := testenv.WaitFor(30*time.Second, 100*time.Millisecond, func() error { return holds(want) }); err != nil {
			t.Fatal(err)
		}
	}
	wait(map[string]bool{"c1": true, "c2": true, "c3": true})
	write("c1", "c2")
	wait(map[string]bool{"c1": true, "c2": true})
	write("c1", "c2", "c3")
	wait(map[string]bool{"c1": true, "c2": true, "c3": true})
}
