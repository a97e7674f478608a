package promshard_test

import (
	"context"
	"fmt"
	"log"
	"os"

	"github.com/prometheus/common/model"

	"github.com/promshard/promshard/filesd"
	"github.com/promshard/promshard/reload"
	"github.com/promshard/promshard/shard"
	"github.com/promshard/promshard/targets"
	"github.com/promshard/promshard/watch"
)

// Compose the packages in your own main.go: who is alive (watch), what to
// scrape (targets), who scrapes what (shard), the files (filesd) and the
// reloads (reload). This is one pass of the loop; a daemon runs it again
// whenever the member set or the targets change, and on a timer
// (examples/prome-shard does exactly that).
func Example() {
	ctx := context.Background()
	out, _ := os.MkdirTemp("", "promshard")
	defer os.RemoveAll(out)

	// Who is alive. In production: watch.NewConsulWatcher(client.Health(), …).
	src, err := watch.NewStatic(watch.StaticOptions{Members: []watch.Member{
		{ID: "collector-a", Address: "10.0.0.1", Port: 9090},
		{ID: "collector-b", Address: "10.0.0.2", Port: 9090},
		{ID: "collector-c", Address: "10.0.0.3", Port: 9090},
	}})
	if err != nil {
		log.Fatal(err)
	}
	members := make(chan []watch.Member)
	go src.Run(ctx, members)

	// What to scrape: any targets.Provider, registered under a job name.
	pool := targets.Static{{Source: "cmdb/web", Labels: model.LabelSet{"env": "prod"}}}
	for i := range 30 {
		pool[0].Targets = append(pool[0].Targets, model.LabelSet{model.AddressLabel: model.LabelValue(fmt.Sprintf("10.1.0.%d:9100", i))})
	}
	reg, _ := targets.NewRegistry(targets.RegistryOptions{})
	if err := reg.Register("node", pool, targets.JobOptions{}); err != nil {
		log.Fatal(err)
	}

	// Where it goes, and how collectors learn of it.
	dir, err := filesd.NewDir(filesd.DirOptions{Dir: out, Template: "{{.ID}}.json"})
	if err != nil {
		log.Fatal(err)
	}
	reloader, _ := reload.NewPool(reload.None{}, reload.PoolOptions{}) // or reload.NewHTTP(…)

	// One pass of the loop.
	ms := <-members
	res, err := reg.Targets(ctx, "node") // on error: res holds the last good targets
	if err != nil {
		log.Fatal(err)
	}
	ring, err := shard.New(shard.DefaultKind, toShard(ms))
	if err != nil {
		log.Fatal(err)
	}
	a, err := shard.Assign(ring, res.Groups, shard.Options{Replicas: 1})
	if err != nil {
		log.Fatal(err)
	}
	written, err := dir.Sync(a.Groups) // atomic; unchanged files are not touched
	if err != nil {
		log.Fatal(err)
	}
	results := reloader.Reload(ctx, toReload(written.Changed(), ms, dir))
	if err := results.Err(); err != nil {
		log.Print(err) // per collector; the others were reloaded
	}
	for _, m := range a.Members {
		fmt.Printf("%s scrapes %d targets\n", m.ID, a.Count(m.ID))
	}
	// Output:
	// collector-a scrapes 8 targets
	// collector-b scrapes 15 targets
	// collector-c scrapes 7 targets
}

// toShard turns healthy collectors into ring members.
func toShard(ms []watch.Member) []shard.Member {
	out := make([]shard.Member, len(ms))
	for i, m := range ms {
		out[i] = shard.Member{ID: m.ID, Weight: m.Weight}
	}
	return out
}

// toReload names the collectors whose files changed.
func toReload(ids []string, ms []watch.Member, dir *filesd.Dir) []reload.Collector {
	addr := map[string]string{}
	for _, m := range ms {
		addr[m.ID] = m.HostPort()
	}
	var out []reload.Collector
	for _, id := range ids {
		file, _ := dir.Path(id)
		out = append(out, reload.Collector{ID: id, Address: addr[id], File: file})
	}
	return out
}
