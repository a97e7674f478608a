// Package elect owns central mode's single writer: when several copies of a
// sharder run against the same outputs, exactly one of them (the leader)
// writes.
//
// [ConsulLock] is leader election with a Consul session tied to a TTL check
// that the copy passes, and a lock in KV. Its parts:
//
//   - [ConsulLock.Run] campaigns and reports each change of leadership;
//   - [ConsulLock.Check] is the fence: a check-session transaction that a
//     leader runs right before each write, so that a leader that was paused
//     and lost the lock writes nothing;
//   - [ConsulLock.Publish] records each new plan of a job as a numbered
//     [Epoch], atomically with that check, so that two copies never publish
//     one number;
//   - [ConsulLock.PublishBlob] and [ConsulLock.ReadBlob] are a plain
//     checksummed store of opaque bytes by name, of any size, that only the
//     leader writes (a sharder keeps its cost tables there).
//
// The package imports only consul/api and promshard's internal packages, so
// it is useful alone: any daemon that needs one writer among copies can use
// it.
package elect
