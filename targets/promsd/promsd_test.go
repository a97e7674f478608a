package promsd_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/prometheus/client_golang/prometheus"
	_ "github.com/prometheus/prometheus/discovery/consul"
	_ "github.com/prometheus/prometheus/discovery/file"
	"github.com/prometheus/prometheus/discovery/targetgroup"
	"go.uber.org/goleak"

	"github.com/promshard/promshard/internal/testenv"
	"github.com/promshard/promshard/targets"
	"github.com/promshard/promshard/targets/promsd"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// Started by client libraries' init, not by the provider.
		goleak.IgnoreTopFunction("go.opencensus.io/stats/view.(*worker).start"),
		goleak.IgnoreAnyFunction("k8s.io/klog/v2.(*flushDaemon).run.func1"),
	)
}

func addrs(gs []*targetgroup.Group) []string {
	var out []string
	for _, g := range gs {
		for _, t := range g.Targets {
			out = append(out, string(t["__address__"]))
		}
	}
	slices.Sort(out)
	return out
}

// waitAddrs runs the provider through a registry and waits until the job's
// targets are want.
func waitAddrs(t *testing.T, p *promsd.Discovery, want []string) []*targetgroup.Group {
	t.Helper()
	reg, _ := targets.NewRegistry(targets.RegistryOptions{Timeout: 10 * time.Second})
	reg.Register("job", p, targets.JobOptions{AllowEmpty: true})
	var got []*targetgroup.Group
	err := testenv.WaitFor(20*time.Second, 100*time.Millisecond, func() error {
		res, err := reg.Targets(context.Background(), "job")
		if err != nil {
			return err
		}
		got = res.TargetGroups()
		if !slices.Equal(addrs(got), want) {
			return fmt.Errorf("targets %v", addrs(got))
		}
		return nil
	})
	if err != nil {
		t.Fatalf("want %v: %v", want, err)
	}
	return got
}

func runProvider(t *testing.T, p *promsd.Discovery) chan struct{} {
	ctx, cancel := context.WithCancel(context.Background())
	notified := make(chan struct{}, 100)
	done := make(chan error)
	go func() { done <- p.Run(ctx, notified) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return notified
}

func TestFileSDConfigs(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "nodes.json")
	os.WriteFile(file, []byte(`[{"targets": ["h1:9100", "h2:9100"], "labels": {"env": "prod"}}]`), 0o644)
	cfgs, err := promsd.ParseConfigs([]byte(fmt.Sprintf("file_sd_configs:\n  - files: [%q]\n    refresh_interval: 1s\n", filepath.Join(dir, "*.json"))))
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewPedanticRegistry()
	p, err := promsd.New("nodes", cfgs, promsd.Options{UpdateInterval: 100 * time.Millisecond, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	notified := runProvider(t, p)
	gs := waitAddrs(t, p, []string{"h1:9100", "h2:9100"})
	if gs[0].Labels["env"] != "prod" || string(gs[0].Labels["__meta_filepath"]) != file {
		t.Fatalf("labels %v", gs[0].Labels)
	}
	for len(notified) > 0 {
		<-notified
	}
	os.WriteFile(file, []byte(`[{"targets": ["h3:9100"]}]`), 0o644)
	select {
	case <-notified:
	case <-time.After(10 * time.Second):
		t.Fatal("no notification after a rewrite")
	}
	waitAddrs(t, p, []string{"h3:9100"})
	// A second provider on the same registry does not collide.
	if _, err := promsd.New("other", cfgs, promsd.Options{Registerer: reg}); err != nil {
		t.Fatalf("second job on one registry: %v", err)
	}
}

func TestConsulSDConfigsWithRealAgent(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	agent := testenv.StartConsul(t)
	client, err := api.NewClient(&api.Config{Address: agent.Addr})
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 3; i++ {
		err := client.Agent().ServiceRegister(&api.AgentServiceRegistration{
			ID: fmt.Sprintf("node-%d", i), Name: "node-exporter", Address: "127.0.0.1", Port: 9100 + i,
			Meta: map[string]string{"rack": fmt.Sprint("r", i)},
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	cfgs, err := promsd.ParseConfigs([]byte(fmt.Sprintf(`consul_sd_configs:
  - server: %q
    services: [node-exporter]
    refresh_interval: 1s
`, agent.Addr)))
	if err != nil {
		t.Fatal(err)
	}
	p, err := promsd.New("node", cfgs, promsd.Options{UpdateInterval: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	runProvider(t, p)
	gs := waitAddrs(t, p, []string{"127.0.0.1:9101", "127.0.0.1:9102", "127.0.0.1:9103"})
	var racks []string
	for _, g := range gs {
		for _, tt := range g.Targets {
			racks = append(racks, string(tt["__meta_consul_service_metadata_rack"]))
		}
	}
	slices.Sort(racks)
	if strings.Join(racks, ",") != "r1,r2,r3" {
		t.Fatalf("consul metadata not passed on: %v (groups %v)", racks, gs)
	}
	if err := client.Agent().ServiceDeregister("node-2"); err != nil {
		t.Fatal(err)
	}
	waitAddrs(t, p, []string{"127.0.0.1:9101", "127.0.0.1:9103"})
}

func TestParseConfigsErrors(t *testing.T) {
	for _, in := range []string{"", "kubernetes_sd_configs: [{role: pod}]", "file_sd_configs: [{files: [a.json], bogus: 1}]"} {
		if _, err := promsd.ParseConfigs([]byte(in)); err == nil {
			t.Errorf("%q accepted", in)
		}
	}
	if _, err := promsd.New("", nil, promsd.Options{}); err == nil {
		t.Error("empty job accepted")
	}
	// This test binary imports consul and file only.
	_, err := promsd.ParseConfigs([]byte("consul_sd_configs: [{server: a}]\nkubernetes_sd_configs: [{role: pod}]"))
	if !errors.Is(err, promsd.ErrNotCompiled) || !strings.Contains(err.Error(), "kubernetes_sd_configs") {
		t.Errorf("a mechanism not compiled in: %v", err)
	}
	if _, err := promsd.ParseConfigs([]byte("file_sd_configs: [{files: [a.json], bogus: 1}]")); errors.Is(err, promsd.ErrNotCompiled) {
		t.Errorf("a bad field of a compiled mechanism: %v", err)
	}
}
