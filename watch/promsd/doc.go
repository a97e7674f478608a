// Package promsd finds collectors with Prometheus' own service discovery:
// any *_sd_configs block a scrape job can hold (kubernetes_sd_configs with
// role pod or endpointslice, dns_sd_configs with SRV records,
// ec2_sd_configs, file_sd_configs, http_sd_configs, …) becomes a
// [watch.Source] beside the Consul and static watchers.
//
// Each discovered target is a collector. Its labels (the group's, then the
// target's) are relabelled with Options.Relabel, in Prometheus' semantics,
// and then the reserved labels describe it:
//
//   - __address__: where its Prometheus listens, host:port (required);
//   - [IDLabel] (__promshard_id__): its member ID, by default the pod name
//     of a Kubernetes target, else __address__;
//   - [WeightLabel] (__promshard_weight__): its weight;
//   - [HealthyLabel] (__promshard_healthy__): "false" keeps it out of the
//     ring; by default a Kubernetes pod must be ready and running, and an
//     endpoint ready and not terminating;
//   - [DrainLabel] (__promshard_drain__): "true" drains it;
//   - every label that does not start with "__" lands in Member.Meta, where
//     spread_by reads its zone and the balancer its max_series.
//
// A target the relabelling drops is no collector. A collector its
// discovery knows but that is out of the ring (not healthy, failing the
// optional probe, settling, drained) is reported by Unhealthy, so that it
// gets an empty list rather than a removed file; one the discovery no
// longer knows is gone. Joins are damped by Options.Settle as the Consul
// watcher damps them ([watch.Damper]); leaves are immediate. When the
// discovery fails, its mechanism keeps its last targets, and the last
// member set stands.
//
// As with targets/promsd, which mechanisms exist is the binary's choice:
// this package imports only the discovery framework (which is why it lives
// apart from watch: users of watch do not pay for it). Import the
// mechanisms for their side effect, e.g.
//
//	import _ "github.com/prometheus/prometheus/discovery/kubernetes"
package promsd
