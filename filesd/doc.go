// Package filesd hands each collector its share of targets, as a file that
// Prometheus' file_sd_configs reads or over HTTP in the http_sd format.
//
// [Marshal] renders target groups exactly as file_sd reads them (JSON or
// YAML, labels sorted, output stable). Targets that carry labels of their
// own besides __address__ get entries of their own, so no label is lost
// (targetgroup.Group's own JSON encoding keeps only __address__). Label names
// and values are validated before anything is written: one bad name makes
// Prometheus silently keep the old file.
//
// [WriteFile] writes atomically: a temp file in the same directory (named
// so that it never matches the *.json / *.yml globs Prometheus watches),
// fsync, rename over the target, fsync of the directory. A reader sees the
// old complete file or the new complete file, never a mix, and a crash
// leaves no temp file that Prometheus would read (a [Dir]'s first Sync
// removes temp files that an interrupted write of its files left behind). When the content is
// unchanged nothing is written, the mtime stays, and the call reports that
// nothing changed, so no reload is needed.
//
// [Dir] keeps a directory of files, one per collector, named by a template.
// A collector with no targets gets an empty list ([]), never a missing or a
// stale file (a stale file means double scrapes). Files of collectors that
// left are removed; only files that the Dir wrote are ever touched (it keeps
// a manifest of them). Collector IDs that would escape the directory are
// rejected.
//
// [Handler] serves the same content over HTTP for http_sd_configs, with
// ETag and 304 support, so that no file needs copying at all.
//
// Each output takes [targetgroup.Group] values (Update, the border a user
// sees) and, from a Sharder, the groups in the module's compact form
// (UpdateCompact: each target its address), which it encodes without
// making a label set per target.
package filesd
