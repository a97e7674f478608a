package watch

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/consul/api"
)

// costChunk is the most bytes of a cost table in one KV entry: Consul
// refuses values above 512 KiB by default.
const costChunk = 256 << 10

// costManifest is what Key+"/costs/"+job holds: which chunks make the
// table, and its checksum.
type costManifest struct {
	SHA256 string    `json:"sha256"`
	Size   int       `json:"size"`
	Chunks int       `json:"chunks"`
	Leader string    `json:"leader"`
	Time   time.Time `json:"time"`
}

func (l *ConsulLock) costKey(job string) string { return l.opts.Key + "/costs/" + job }

// costDataKey is the prefix of a table's chunks: its checksum names it, so
// chunks of a table being written never mix with those of the table read.
func (l *ConsulLock) costDataKey(job, sum string) string {
	return l.opts.Key + "/costs-data/" + job + "/" + sum + "/"
}

// PublishCosts records the cost table a leader balanced job with (opaque
// bytes: the caller's encoding), so that standbys and copies in self mode
// place targets with the same costs without reading collectors. Tables of
// any size are kept in chunks under Key+"/costs-data/"+job, written first;
// then the manifest Key+"/costs/"+job names them, in one transaction with
// the check that this copy holds the lock. Only the leader's table is ever
// named; chunks of older tables are deleted after.
func (l *ConsulLock) PublishCosts(ctx context.Context, job string, table []byte) error {
	ls := l.lease.Load()
	if ls == nil {
		return ErrNotLeader
	}
	sum := sha256.Sum256(table)
	m := costManifest{SHA256: hex.EncodeToString(sum[:]), Size: len(table), Leader: l.opts.Name, Time: time.Now().UTC()}
	w := (&api.WriteOptions{}).WithContext(ctx)
	prefix := l.costDataKey(job, m.SHA256)
	for off := 0; ; off += costChunk { // one chunk at least, even when empty
		end := min(off+costChunk, len(table))
		if _, err := l.c.KV().Put(&api.KVPair{Key: prefix + strconv.Itoa(m.Chunks), Value: table[off:end]}, w); err != nil {
			return fmt.Errorf("watch: write the cost table of job %q: %w", job, err)
		}
		m.Chunks++
		if end == len(table) {
			break
		}
	}
	v, err := json.Marshal(m)
	if err != nil {
		return err
	}
	if _, err := l.txn(ctx, ls, api.TxnOps{{KV: &api.KVTxnOp{Verb: api.KVSet, Key: l.costKey(job), Value: v}}}); err != nil {
		return err
	}
	keys, _, err := l.c.KV().Keys(l.opts.Key+"/costs-data/"+job+"/", "/", (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return nil // the table is published; old chunks go next time
	}
	for _, k := range keys {
		if k != prefix {
			_, _ = l.c.KV().DeleteTree(k, w)
		}
	}
	return nil
}

// PublishedCosts reads the cost table last published for job, and its
// checksum (which changes with its content); nil and "" when none was.
func (l *ConsulLock) PublishedCosts(ctx context.Context, job string) (table []byte, sum string, err error) {
	q := (&api.QueryOptions{}).WithContext(ctx)
	pair, _, err := l.c.KV().Get(l.costKey(job), q)
	if err != nil {
		return nil, "", fmt.Errorf("watch: read the cost table of job %q: %w", job, err)
	}
	if pair == nil {
		return nil, "", nil
	}
	var m costManifest
	if err := json.Unmarshal(pair.Value, &m); err != nil {
		return nil, "", fmt.Errorf("watch: cost table of job %q at %s: %w", job, pair.Key, err)
	}
	prefix := l.costDataKey(job, m.SHA256)
	pairs, _, err := l.c.KV().List(prefix, q)
	if err != nil {
		return nil, "", fmt.Errorf("watch: read the cost table of job %q: %w", job, err)
	}
	chunks := make([][]byte, m.Chunks)
	for _, p := range pairs {
		i, err := strconv.Atoi(strings.TrimPrefix(p.Key, prefix))
		if err == nil && i >= 0 && i < m.Chunks {
			chunks[i] = p.Value
		}
	}
	table = make([]byte, 0, m.Size)
	for _, c := range chunks {
		table = append(table, c...)
	}
	if got := sha256.Sum256(table); hex.EncodeToString(got[:]) != m.SHA256 {
		// A newer table replaced this one while it was read.
		return nil, "", fmt.Errorf("watch: cost table of job %q: chunks under %s do not match their checksum", job, prefix)
	}
	return table, m.SHA256, nil
}
