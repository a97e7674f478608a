// Package web serves a [promshard.Sharder] over HTTP: the status page for a
// person, the JSON API (assignment, explain, audit, simulate), readiness,
// the http_sd endpoints of the jobs' outputs, and optionally /metrics and
// Go's profiles.
//
// It is built only on the Sharder's public API (Jobs, Job, Snapshot,
// Explain, Simulate), so anything it shows an embedder can compute too. A
// daemon mounts [Handler] in its own mux, behind its own TLS and
// authentication; the library itself serves no port.
//
// [JobAssignment] is the format of /api/v1/assignment; a saved copy reads
// back with [ReadAssignment] and can be simulated offline
// ([SimulateSaved]). [ParseChange] reads a what-if as a command line or a
// query gives it.
package web
