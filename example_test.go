package promshard_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"os/signal"
	"syscall"

	"github.com/prometheus/common/model"

	"github.com/promshard/promshard"
	"github.com/promshard/promshard/filesd"
	"github.com/promshard/promshard/reload"
	"github.com/promshard/promshard/targets"
	"github.com/promshard/promshard/watch"
)

// A complete daemon: the healthy collectors, a target pool, one file_sd
// file per collector, reloads, and the loop that keeps them in step until
// SIGINT or SIGTERM. This one stops itself after its first reshard.
func Example() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, done := context.WithCancel(ctx)
	out, _ := os.MkdirTemp("", "promshard")
	defer os.RemoveAll(out)

	// Who is alive. In production: watch.NewConsulWatcher(client.Health(),
	// watch.ConsulOptions{Service: "prometheus-collector"}).
	collectors, _ := watch.NewStaticWatcher(watch.StaticOptions{Members: []watch.Member{
		{ID: "collector-a", Address: "10.0.0.1", Port: 9090},
		{ID: "collector-b", Address: "10.0.0.2", Port: 9090},
		{ID: "collector-c", Address: "10.0.0.3", Port: 9090},
	}})
	// What to scrape: any targets.Provider (promsd for Prometheus' service
	// discovery, targets.NewFile, targets.NewHTTPSD, or your CMDB in Go).
	pool := targets.Static{{Source: "cmdb/web", Labels: model.LabelSet{"env": "prod"}}}
	for i := range 30 {
		pool[0].Targets = append(pool[0].Targets, model.LabelSet{model.AddressLabel: model.LabelValue(fmt.Sprintf("10.1.0.%d:9100", i))})
	}
	// Where each collector's share goes (atomic files, one per collector).
	dir, _ := filesd.NewDir(filesd.DirOptions{Dir: out})

	sharder, err := promshard.New([]promshard.Job{{
		Name: "node", Targets: pool, Outputs: []promshard.Output{dir},
		Reloader: reload.None{}, // or reload.NewHTTP(reload.HTTPOptions{}): POST /-/reload
	}}, promshard.Options{OnReshard: func(r promshard.Report) {
		fmt.Printf("%s: %d targets on %d collectors, %d files changed\n", r.Job, r.Targets, r.Members, len(r.Changed))
		done() // a daemon goes on until a signal
	}})
	if err != nil {
		log.Fatal(err)
	}
	if err := sharder.Run(ctx, collectors); err != nil {
		log.Fatal(err) // a part failed for good
	}
	snap, _ := sharder.Snapshot("node")
	for _, m := range snap.Assignment.Members {
		fmt.Printf("%s scrapes %d targets\n", m.ID, snap.Assignment.Count(m.ID))
	}
	// Output:
	// node: 30 targets on 3 collectors, 3 files changed
	// collector-a scrapes 8 targets
	// collector-b scrapes 15 targets
	// collector-c scrapes 7 targets
}
