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
// [Sharder.Simulate] feed status pages and HTTP APIs: package
// [github.com/promshard/promshard/web] serves them.
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
// The loop keeps three promises. Failover never waits for a provider:
// providers are read in the background and a reshard places the targets
// in hand. Outputs are kept, not only written: every refresh checks that
// each output still holds what was written ([Keeper]) and writes again what
// differs. No target is lost by a failed write: when targets move between
// collectors and an output writes file by file ([FileOutput]), every
// collector first gets what it gains while it keeps what it loses, and only
// then what it loses is taken away.
//
// # Glossary
//
// One word per thing, in the code, the logs, the metrics and the README:
//
//   - collector: a Prometheus server of the scrape pool.
//   - member: a healthy collector, in the ring; the member set is what a
//     member source ([github.com/promshard/promshard/watch.Source]) reports.
//   - leaver: a collector out of the ring that is still registered and may
//     still run, so it gets an empty list rather than a removed file. A
//     leaver is sick (it fails its health check) or drained (put out on
//     purpose: Consul maintenance or Job.DrainTag); its targets move, with a
//     hand-off when it is drained.
//   - gone: a collector no longer registered; its file is removed.
//   - excluded: a healthy collector left out of the ring because an output
//     cannot serve its ID (or its weight is too large).
//   - target: one scrape target (a label set with __address__); targets
//     travel in Prometheus target groups.
//   - assignment: which members own each target; written to the outputs.
//   - reshard: one pass of the loop; its [Reason] says what caused it.
//   - refresh: the timer pass every RefreshInterval: providers read again,
//     outputs checked.
//   - hand-off: a move between two live collectors, with overlap until the
//     new owner scrapes.
//   - epoch: a numbered plan published by the leader of central mode.
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
//   - [github.com/promshard/promshard/elect]: central mode's single writer
//     (a Consul lock, the fence, epochs, a blob store).
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
