// Command prome-shard is the reference binary of promshard: it composes the
// library's packages from a YAML config.
//
// For each job it watches the healthy collectors (in Consul, or a static
// list with probes), takes the target pool from a provider (static, file_sd,
// http_sd, or any Prometheus service discovery), places every target on
// the ring, writes each collector's file_sd file (or serves it over
// http_sd), and reloads the collectors whose files changed. It reshards when
// the collectors change, when the provider reports new targets, and on a
// timer.
//
//	prome-shard -config config.yaml             # central: every collector's file
//	prome-shard -config config.yaml -member ID  # self: run beside collector ID
//	prome-shard -config config.yaml -once       # one reshard, then exit
//	prome-shard -config config.yaml -dry-run    # print the assignment only
//
// Exit codes: 0 on success or SIGINT/SIGTERM (collectors it registered are
// deregistered first), 1 when a -once run or the daemon failed, 2 for a
// mistake in the flags or the config (the message names the field).
//
// HTTP endpoints (listen in the config, or -listen): /metrics, /-/healthy,
// /-/ready (after every job's first reshard), /api/v1/assignment,
// /api/v1/explain?target=ADDR, and /sd/JOB/COLLECTOR for http_sd_configs.
//
// config.yaml beside this file documents every field; demo.yaml runs
// without Consul or Prometheus.
package main
