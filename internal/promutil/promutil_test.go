package promutil

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestRegister(t *testing.T) {
	if err := Register(nil, "x", prometheus.NewCounter(prometheus.CounterOpts{Name: "a_total"})); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	c := func() prometheus.Collector {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: "a_total", Help: "a"})
	}
	if err := Register(reg, "pkg: register metrics", c()); err != nil {
		t.Fatal(err)
	}
	err := Register(reg, "pkg: register metrics", c())
	if err == nil || !strings.Contains(err.Error(), "pkg: register metrics: already registered") {
		t.Fatalf("second registration: %v", err)
	}
}
