// Package watch tells which collectors are alive.
//
// A collector is a Prometheus server in the scrape pool. This package
// reports the healthy ones as a sorted, deduplicated []Member every time the
// set changes, and only then. Two sources are provided, both with the same
// shape (a [Source] whose Run sends full member sets on a channel):
//
//   - [ConsulWatcher]: the passing instances of one Consul service, followed
//     with blocking queries. It follows Consul's blocking-query rules: it
//     carries X-Consul-Index, resets when the index goes backwards, never
//     sends an index that is not positive, waits a minimum interval between
//     queries so a flapping service cannot spin it, and backs off
//     exponentially with jitter on errors. On errors it keeps the last good
//     set: nothing is reported until Consul answers again. An optional settle
//     window collapses a burst of changes (a rolling restart) into one
//     report.
//   - [StaticWatcher]: a fixed list of collectors, for users without Consul, with
//     optional active probes ([HTTPProbe], [TCPProbe]) so that a dead
//     collector still leaves the set.
//
// [Register] and [Deregister] put collectors into Consul as service
// instances with a health check (HTTP on Prometheus' /-/healthy by default,
// TCP, or TTL driven by [PassTTL]).
//
// Leader election for several copies of central mode lives in package
// [github.com/promshard/promshard/elect].
//
// Consul is reached through small interfaces ([HealthClient], [AgentClient])
// that *api.Health and *api.Agent satisfy; [NewConsulClient] builds an
// *api.Client from the standard CONSUL_* environment variables with an HTTP
// timeout long enough for blocking queries.
//
// Metrics are registered on the prometheus.Registerer given in the options
// (none when it is nil), under promshard_watch_*.
package watch
