package promsd_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/promshard/promshard/targets"
	"github.com/promshard/promshard/targets/promsd"
)

// Run Prometheus' own service discovery, configured with the YAML of a
// scrape job, as the provider of a job. static_configs needs no server;
// consul_sd_configs, kubernetes_sd_configs and the others are configured
// the same way once their package is imported.
func ExampleNew() {
	cfgs, err := promsd.ParseConfigs([]byte(`
static_configs:
  - targets: [10.0.0.1:9100, 10.0.0.2:9100]
    labels: {env: prod}
`))
	if err != nil {
		log.Fatal(err)
	}
	p, err := promsd.New("node", cfgs, promsd.Options{UpdateInterval: 100 * time.Millisecond})
	if err != nil {
		log.Fatal(err)
	}
	reg, _ := targets.NewRegistry(targets.RegistryOptions{})
	reg.Register("node", p, targets.JobOptions{})

	ctx, cancel := context.WithCancel(context.Background())
	changed := make(chan string, 1)
	done := make(chan error)
	go func() { done <- reg.Run(ctx, changed) }() // runs the discovery
	fmt.Println("changed:", <-changed)
	res, err := reg.Targets(ctx, "node")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(res.Targets(), "targets, env", res.Groups[0].Labels["env"])
	cancel()
	<-done
	// Output:
	// changed: node
	// 2 targets, env prod
}
