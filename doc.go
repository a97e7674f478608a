// Package promshard makes the scrape side of Prometheus highly available by
// dynamic sharding, and [Sharder] is where to start.
//
// A pool of collector Prometheus servers registers in Consul with health
// checks. A [Sharder] follows which collectors are healthy, takes a pool of
// scrape targets from pluggable providers, gives every target to R healthy
// collectors on a ring, and hands each collector its share through outputs
// (a file_sd file per collector, or an http_sd endpoint), reloading the
// collectors whose share changed. When a collector dies only its targets
// move.
//
// A daemon builds the parts, hands them to [New] as [Job] values and calls
// [Sharder.Run] with its member source; the package Example is a complete
// one. The Sharder owns the loop: it reshards when the member set changes,
// when a provider reports new targets, and every RefreshInterval, with
// bursts coalesced; it keeps a provider's last good targets when it fails;
// it never writes an assignment made of nothing (no collector, no targets);
// it reloads in the background, retrying each collector until a reload
// succeeds, so a slow collector delays no other; and in self mode
// ([Job.Self]) it writes only one collector's file, [] while that collector
// is not healthy. [Sharder.Snapshot], [Sharder.Explain] and
// [Sharder.Handler] serve status pages and HTTP APIs.
//
// Two options read the collectors' own Prometheus APIs, and are off unless
// set, since only the caller knows that member addresses are Prometheus
// servers: Options.Audit checks, after each reshard and on a timer, that
// every target is scraped by exactly its collectors (package audit), and
// Options.Handoff makes a move between two live collectors make-before-break:
// the old owner keeps the target until the new owner scrapes it.
//
// Central mode (one process writes every collector's output) runs as
// several copies with Options.Elector ([github.com/promshard/promshard/elect.ConsulLock]):
// one leader writes and reloads, each write fenced by a check with Consul,
// each new plan published as a numbered epoch; the standbys keep the
// assignment computed and take over when the leader dies.
//
// The parts are packages of their own that do not import each other and
// exchange plain values (member IDs and Prometheus target groups), so each
// is useful alone:
//
//   - [github.com/promshard/promshard/watch]: collectors in Consul
//     (a [github.com/promshard/promshard/watch.Registrar], health checks, a
//     blocking-query watcher) or a static list with probes.
//   - [github.com/promshard/promshard/targets]: where targets come from
//     (Prometheus service discovery in targets/promsd, files, HTTP, a Go
//     function).
//   - [github.com/promshard/promshard/shard]: rings and the deterministic
//     assignment of targets to members, and Explain.
//   - [github.com/promshard/promshard/filesd]: atomic file_sd files, a
//     self-mode file and an http_sd handler: the outputs.
//   - [github.com/promshard/promshard/reload]: telling a collector that its
//     targets changed (HTTP, a signal, a command).
//   - [github.com/promshard/promshard/audit]: what each collector actually
//     scrapes, against the assignment.
//
// Every long-running part follows one contract. Run(ctx, ...) works until
// ctx is done and then returns nil; it returns an error only when it fails
// for good (a retry cannot mend it: a token Consul refuses, service
// discovery configs that cannot be applied); passing failures are logged,
// counted in a metric and retried, and the last good state stands meanwhile.
// A part that learns of changes by itself is given a channel by Run and
// sends on it: a member source ([github.com/promshard/promshard/watch.Source])
// sends the whole member set, which is small; a target provider
// ([github.com/promshard/promshard/targets.Runner]) sends only the news, and
// the targets are read through the provider, because they can be many and
// are validated on every read.
//
// examples/prome-shard is the reference binary: a YAML config in, these
// values out, and HTTP endpoints around a Sharder.
package promshard
