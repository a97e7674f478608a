// Package promshard makes the scrape side of Prometheus highly available by
// dynamic sharding.
//
// A pool of collector Prometheus servers registers in Consul with health
// checks. promshard watches which collectors are healthy, takes a pool of
// scrape targets from pluggable providers, gives every target to one (or R)
// healthy collectors on a consistent-hash ring, and hands each collector its
// share as a file_sd file (or an HTTP SD endpoint), reloading Prometheus when
// needed. When a collector dies only its targets move.
//
// promshard is a library. Its packages do not import each other and exchange
// plain values (member IDs and Prometheus target groups):
//
//   - [github.com/promshard/promshard/watch]: collectors in Consul
//     (registration, health checks, a blocking-query watcher) or a static
//     list with probes.
//   - [github.com/promshard/promshard/targets]: where targets come from
//     (Prometheus service discovery, files, HTTP, a Go function).
//   - [github.com/promshard/promshard/shard]: rings and the deterministic
//     assignment of targets to members.
//   - [github.com/promshard/promshard/filesd]: atomic file_sd files and an
//     http_sd handler.
//   - [github.com/promshard/promshard/reload]: telling a collector that its
//     targets changed.
//
// The loop that joins them lives in the user's main.go; examples/prome-shard
// is the reference, and the package Example is one pass of it. In outline:
//
//	go watcher.Run(ctx, members)                 // Consul: healthy collectors
//	go registry.Run(ctx, changed)                // providers that watch by themselves
//	for {
//		select {
//		case ms = <-members:                 // membership changed
//		case <-changed:                      // a provider has new targets
//		case <-ticker.C:                     // and on a timer
//		}
//		res, _ := registry.Targets(ctx, "node") // last good targets on error
//		ring, _ := shard.New(shard.DefaultKind, toShard(ms))
//		a, _ := shard.Assign(ring, res.Groups, shard.Options{Replicas: 1})
//		sync, _ := dir.Sync(a.Groups)        // one file per collector, atomic
//		pool.Reload(ctx, toReload(sync.Changed(), ms))
//	}
package promshard
