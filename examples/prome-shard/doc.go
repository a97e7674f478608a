// Command prome-shard is the reference binary of promshard: it builds the
// library's values from a YAML config (config.yaml documents every field,
// demo.yaml runs anywhere) and runs a promshard.Sharder, centrally or beside
// one collector (-member ID); -once reshards once, -dry-run only prints,
// "simulate -remove ID -add ID[:W]" prints what a change would move. Exit
// codes: 0 on success or SIGINT/SIGTERM, 1 when a run or a part failed, 2
// for a flag or config mistake. SIGHUP reloads the config. HTTP: / (status),
// /metrics, /-/healthy, /-/ready, /api/v1/..., /sd/JOB/ID.
package main
