// Package reload tells a collector that its targets changed.
//
// A [Reloader] acts on one [Collector]. The implementations:
//
//   - [HTTP]: POST /-/reload to Prometheus (started with
//     --web.enable-lifecycle), with a timeout and retries with backoff;
//     authentication and TLS come with the client you give it, built from a
//     Prometheus-style HTTP client config. A 403 "lifecycle API is not
//     enabled" is [ErrLifecycleDisabled] and is not retried; a failed reload
//     (Prometheus answers 500 when its config does not load) is
//     [ErrReloadFailed] and carries the response body.
//   - [Signal]: SIGHUP (or another signal) to a pid or to the pid in a pid
//     file.
//   - [Command]: a user command run with the collector and its file as
//     arguments: the place for scp, rsync or ansible copies.
//   - [None]: nothing.
//
// When is a reload needed? Prometheus' file_sd_configs watches its files
// (inotify plus a periodic re-read, refresh_interval, 5m by default) and
// picks up a rewritten file by itself within about a second, so when
// promshard writes the files on the collector's own disk no reload is
// needed: use [None]. http_sd_configs polls on its refresh_interval (60s by
// default), and also needs no reload. A reload is needed when the files are
// copied to a host where file_sd does not watch them (use [Command]), when
// the change is in prometheus.yml itself, or to cut the pick-up delay of
// http_sd (a reload refreshes every discoverer).
//
// [Pool] fans a reload out to many collectors with a concurrency limit: one
// slow or dead collector does not hold up the others, and every collector's
// error is reported on its own. Its metrics go to an injected
// prometheus.Registerer under promshard_reload_*.
package reload
