// Package promsd runs Prometheus' own service discovery as a target
// provider.
//
// Users configure it with the YAML they already have in prometheus.yml:
// the *_sd_configs of a scrape job (kubernetes_sd_configs,
// consul_sd_configs, ec2_sd_configs, dns_sd_configs, file_sd_configs,
// http_sd_configs, static_configs, …). [ParseConfigs] reads them and
// [New] runs them through github.com/prometheus/prometheus/discovery's
// manager, so updates are merged exactly as Prometheus merges them: keyed
// by group source, an empty group deleting its source.
//
// Which mechanisms exist is the binary's choice: this package imports only
// the discovery framework. Import the mechanisms you need for their side
// effect, e.g.
//
//	import _ "github.com/prometheus/prometheus/discovery/consul"
//
// or all of them with github.com/prometheus/prometheus/discovery/install
// (which makes a binary take minutes to build and weigh about 100 MB). A
// config that names a mechanism left out fails with [ErrNotCompiled].
//
// Relabelling is not applied here. The discovered labels, __meta_* labels
// included, are passed on to the collectors unchanged, and the collector's
// own relabel_configs in the scrape job that reads the file_sd file (or
// http_sd endpoint) apply to them exactly as they would to the native
// service discovery. Targets are sharded by their discovered __address__
// (or the shard key label). To leave targets out of the pool before
// sharding, wrap the provider in a targets.Func that filters.
//
// The package lives apart from targets because the discovery framework
// pulls in parts of client-go.
package promsd
