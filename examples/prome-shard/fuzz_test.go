package main

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The config loader never panics, and a config it accepts builds the
// library values (or fails with an error) without panicking either.
func FuzzLoadConfig(f *testing.F) {
	for _, s := range []string{okJob, okJob + "refresh_interval: 1ms\n", okJob + "listen: host:99999\n",
		strings.Replace(okJob, "{dir: OUT}", "{dir: OUT, format: yaml}", 1),
		strings.Replace(okJob, "id: a,", "id: ../evil,", 1),
		strings.Replace(okJob, "port: 9092}", "port: 9092, weight: 4294967295}", 1),
		"jobs: [{name: x}]\n", "jobs:\n  - name: x\n    targets: {static: [{targets: []}]}\n", "{", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		dir := t.TempDir()
		p := filepath.Join(dir, "c.yaml")
		if err := os.WriteFile(p, []byte(strings.ReplaceAll(body, "OUT", filepath.Join(dir, "out"))), 0o644); err != nil {
			t.Fatal(err)
		}
		cfg, err := LoadConfig(p)
		if err != nil {
			return
		}
		_, _ = newApp(cfg, Flags{DryRun: true}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	})
}
