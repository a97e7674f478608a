// Command prome-shard is the reference binary of promshard: it builds the
// library's values from a YAML config (config.yaml beside this file
// documents every field; demo.yaml runs without Consul or Prometheus) and
// runs a promshard.Sharder.
//
//	prome-shard -config config.yaml             # central: every collector's file
//	prome-shard -config config.yaml -member ID  # self: run beside collector ID
//	prome-shard -config config.yaml -once       # one reshard, then exit
//	prome-shard -config config.yaml -dry-run    # print the assignment only
//
// Exit codes: 0 on success or SIGINT/SIGTERM (collectors it registered are
// deregistered first), 1 when a -once run or a part of the daemon failed
// (the log names the part), 2 for a mistake in the flags or the config.
//
// HTTP (listen, or -listen): /metrics, /-/healthy, /-/ready,
// /api/v1/assignment, /api/v1/explain?target=ADDR, /sd/JOB/COLLECTOR.
package main
