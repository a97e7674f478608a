package reload_test

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/promshard/promshard/internal/testenv"
	"github.com/promshard/promshard/reload"
)

const minimalConfig = "global:\n  scrape_interval: 1s\nscrape_configs: []\n"

// The HTTP reloader reloads a real Prometheus, reports a config that does
// not load with Prometheus' own message, and recognises a disabled
// lifecycle API.
func TestRealPrometheusReload(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	p := testenv.StartPrometheus(t, t.TempDir(), minimalConfig)
	ctx := context.Background()
	const metric = "prometheus_config_last_reload_success_timestamp_seconds"
	before, err := testenv.Metric(ctx, p.Addr, metric)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond) // the timestamp has a resolution of one second
	h, err := reload.NewHTTP(reload.HTTPOptions{Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	c := reload.Collector{ID: "p", Address: p.Addr}
	if err := h.Reload(ctx, c); err != nil {
		t.Fatal(err)
	}
	after, err := testenv.Metric(ctx, p.Addr, metric)
	if err != nil || after <= before {
		t.Fatalf("%s %v -> %v (%v): no reload seen", metric, before, after, err)
	}
	if err := os.WriteFile(p.Config, []byte("scrape_configs: [\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	err = h.Reload(ctx, c)
	if !errors.Is(err, reload.ErrReloadFailed) || !strings.Contains(strings.ToLower(err.Error()), "yaml") {
		t.Fatalf("bad config: %v", err)
	}
	if ok, _ := testenv.Metric(ctx, p.Addr, "prometheus_config_last_reload_successful"); ok != 0 {
		t.Fatal("Prometheus reports the bad reload as successful")
	}

	locked := testenv.StartPrometheus(t, t.TempDir(), minimalConfig, "--no-web.enable-lifecycle")
	err = h.Reload(ctx, reload.Collector{ID: "locked", Address: locked.Addr})
	if !errors.Is(err, reload.ErrLifecycleDisabled) {
		t.Fatalf("lifecycle disabled: %v", err)
	}
}
