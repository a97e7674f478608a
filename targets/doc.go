// Package targets is where the target pool comes from.
//
// A [Provider] returns target groups ([targetgroup.Group], the shape of a
// file_sd entry) for one job. A provider that learns of changes by itself
// also implements [Runner], so that a reshard need not wait for a timer.
//
// A [Registry] maps job names to providers, built in code: the typed
// replacement for looking a method up by the job's name. It runs every
// fetch with a timeout, validates what comes back ([Validate]: every target
// has an address, label names and values are valid for Prometheus; a bad
// group is reported with its job, source and reason, and is not passed on),
// and keeps each job's last good result: a provider that errors, times out
// or unexpectedly returns nothing leaves the last good targets in place,
// with their age, and the error in the result and in the metrics. It holds
// the targets in the module's compact form ([Result.Groups]: a group's
// source and labels once, each target its address, a label set only for a
// target with labels of its own); [Result.TargetGroups] gives them back as
// [targetgroup.Group] values.
//
// Adapters:
//
//   - [Static]: fixed groups, from a config file.
//   - [Func]: a plain Go function (a CMDB or service-tree client).
//   - [File]: file_sd files (JSON or YAML, globs) in Prometheus' own format.
//   - [HTTPSD]: an endpoint in Prometheus' http_sd format, asked with
//     If-None-Match and If-Modified-Since when the server tags its
//     answers: a 304 returns the last groups, neither read nor parsed.
//   - Sub-package promsd: any Prometheus service discovery
//     (kubernetes_sd_configs, consul_sd_configs, ec2_sd_configs, …)
//     configured with Prometheus' own YAML. It lives apart because
//     Prometheus' discovery framework pulls in parts of client-go; this
//     package imports only discovery/targetgroup.
//
// Metrics are registered on the Registerer given to [NewRegistry] under
// promshard_targets_*, labelled by job.
package targets
