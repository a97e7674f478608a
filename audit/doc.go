// Package audit proves, continuously, that every target is scraped by the
// collectors it is assigned to, and by no others.
//
// A sharder trusts its own plan; an [Auditor] checks it against the
// collectors. It reads each collector's active targets through Prometheus'
// HTTP API (GET /api/v1/targets, with client_golang's API client), in
// parallel with a concurrency limit and a timeout per collector, and
// compares what each one scrapes with the intended assignment: member ID →
// target groups, the same value the sharder writes.
//
// # What is matched
//
// A target is identified by its address: the __address__ among the labels
// it was given (on the collector's side, the discovered labels of an active
// target in the job's scrape pool, before the collector's relabelling).
// The discovered labels are what the collector was handed, so relabelling
// that rewrites or adds labels does not blind the audit; relabelling that
// drops a target makes it missing, because it is then not scraped. Two
// targets of one job with the same address are one target to the audit.
// Only active targets of the job's scrape pool (by default the job's name)
// count; other scrape jobs on the same collectors are ignored.
//
// # States
//
// Every target gets zero or more of these (a target with none is [OK]):
//
//   - [Missing]: an intended collector that answered does not scrape it.
//   - [Orphan]: no collector that answered scrapes it, and every intended
//     collector answered: nobody scrapes it. An orphan is missing too.
//   - [Extra]: a collector that answered scrapes it but should not (also a
//     target no longer in the assignment that a collector still scrapes).
//   - [Down]: an intended collector scrapes it, but the last scrape failed
//     (health not "up").
//   - [Unknown]: an intended collector did not answer; nothing is claimed
//     about that collector's share, and it never counts as orphan.
//   - [InTransit]: its intended collectors changed less than Grace ago and
//     it would otherwise be missing, orphan, extra or down: a normal reshard
//     is settling (a collector notices a new file within its discovery tick
//     and scrapes it within a scrape interval), so no alert fires.
//
// The metric promshard_audit_targets{job,state} counts the targets with
// each state, so promshard_audit_targets{state=~"missing|orphan|extra"} > 0
// for a few minutes is the alert. Every state is exported, zeros included,
// so the absence of a series never hides a problem.
//
// [Auditor.Series] reads what each target costs, for placement by cost
// (shard.Options.Costs): its most samples per scrape after relabelling
// over the last hour, through the collectors' query API.
package audit
