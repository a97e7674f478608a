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

// TestQuickStart runs the README's quick start: the files it shows,
// verbatim, with real Consul, three real Prometheus collectors and the
// binary; every target is scraped by exactly one collector. Only the
// ports (free loopback ports instead of the fixed ones) and the scratch
// directory change.
func TestQuickStart(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join("quickstart", name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	for name, lang := range map[string]string{"run.sh": "sh", "collector-1.yml": "yaml", "prome-shard.yml": "yaml"} {
		if !strings.Contains(string(readme), "```"+lang+"\n"+read(name)+"```") {
			t.Fatalf("README.md does not show quickstart/%s verbatim: copy it into the quick start", name)
		}
	}
	for _, i := range []string{"2", "3"} {
		if got, want := read("collector-"+i+".yml"), strings.ReplaceAll(read("collector-1.yml"), "1", i); got != want {
			t.Fatalf("quickstart/collector-%s.yml is not collector-1.yml for collector %s:\n%s", i, i, got)
		}
	}
	if testing.Short() {
		t.Skip("end-to-end test")
	}
	scratch := t.TempDir()
	local := func(s string) string { return strings.ReplaceAll(s, "/tmp/promshard-quickstart", scratch) }
	os.MkdirAll(filepath.Join(scratch, "shards"), 0o755)
	agent := testenv.StartConsul(t)
	var cs []*collector
	cfg := local(read("prome-shard.yml"))
	cfg = strings.ReplaceAll(cfg, "127.0.0.1:8500", agent.Addr)
	for i := 1; i <= 3; i++ {
		id := fmt.Sprintf("collector-%d", i)
		c := newCollector(id, testenv.StartPrometheus(t, t.TempDir(), local(read(id+".yml"))))
		cs = append(cs, c)
		_, port := hostPortString(c.prom.Addr)
		cfg = strings.ReplaceAll(cfg, fmt.Sprintf("909%d", i), port)
	}
	listen := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	cfg = strings.ReplaceAll(cfg, "127.0.0.1:9099", listen)
	path := filepath.Join(t.TempDir(), "prome-shard.yml")
	os.WriteFile(path, []byte(cfg), 0o644)
	if code, stdout, stderr := runCmd("--config.file", path, "check", "config"); code != exitOK {
		t.Fatalf("check config: exit %d\n%s\n%s", code, stdout, stderr)
	}
	startBinary(t, buildBinary(t), "--config.file", path)
	targets := []string{listen}
	for _, c := range cs {
		targets = append(targets, c.prom.Addr)
	}
	got := waitScraped(t, cs, "node", targets, 1, 90*time.Second, nil)
	t.Logf("quick start: every target scraped once: %v", got)
}
