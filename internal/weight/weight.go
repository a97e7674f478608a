// Package weight holds the one bound on a member's weight, shared by the
// packages that read weights (watch) and use them (shard).
package weight

// Max is the largest weight a member may have. Rendezvous hashing scores a
// member once per unit of weight, so the bound keeps a lookup and the ring's
// memory proportional to at most Max times the members: an unbounded weight
// from Consul metadata (4294967295) would otherwise exhaust memory.
const Max = 1000
