// Command prome-shard is the reference binary of promshard: it builds the
// library's values from a YAML config (config.yaml documents every field;
// demo.yaml runs without Consul or Prometheus) and runs a promshard.Sharder
// in central mode, or in self mode with -member ID; -once reshards once and
// -dry-run prints the assignment only. Exit codes: 0 on success or
// SIGINT/SIGTERM (after deregistering), 1 when a -once run or a part of the
// daemon failed (the log names the part), 2 for a flag or config mistake;
// SIGHUP is ignored. HTTP (listen or -listen): /metrics, /-/healthy,
// /-/ready, /api/v1/assignment, /api/v1/explain?target=ADDR, /sd/JOB/ID.
package main
