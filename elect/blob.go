package elect

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

// blobChunk is the most bytes of a blob in one KV entry: Consul refuses
// values above 512 KiB by default.
const blobChunk = 256 << 10

// blobManifest is what Key+"/blobs/"+name holds: how many chunks make the
// blob, and its checksum.
type blobManifest struct {
	SHA256 string    `json:"sha256"`
	Size   int       `json:"size"`
	Chunks int       `json:"chunks"`
	Leader string    `json:"leader"`
	Time   time.Time `json:"time"`
}

func (l *ConsulLock) blobKey(name string) string { return l.opts.Key + "/blobs/" + name }

// blobDataKey is the prefix of a blob's chunks: its checksum names it, so
// chunks of a blob being written never mix with those of the blob read.
func (l *ConsulLock) blobDataKey(name, sum string) string {
	return l.opts.Key + "/blobs-data/" + name + "/" + sum + "/"
}

// PublishBlob records opaque bytes under a name (a job's cost table, its
// pending hand-offs), so that standbys and copies in self mode read what
// the leader decided with. Blobs of any size are kept in chunks under
// Key+"/blobs-data/"+name, written first; then the manifest
// Key+"/blobs/"+name names them with their checksum, in one transaction
// with the check that this copy holds the lock. Only the leader's blob is
// ever named; chunks of older ones are deleted after.
func (l *ConsulLock) PublishBlob(ctx context.Context, name string, data []byte) error {
	ls := l.lease.Load()
	if ls == nil {
		return ErrNotLeader
	}
	sum := sha256.Sum256(data)
	m := blobManifest{SHA256: hex.EncodeToString(sum[:]), Size: len(data), Leader: l.opts.Name, Time: time.Now().UTC()}
	w := (&api.WriteOptions{}).WithContext(ctx)
	prefix := l.blobDataKey(name, m.SHA256)
	for off := 0; ; off += blobChunk { // one chunk at least, even when empty
		end := min(off+blobChunk, len(data))
		if _, err := l.c.KV().Put(&api.KVPair{Key: prefix + strconv.Itoa(m.Chunks), Value: data[off:end]}, w); err != nil {
			return fmt.Errorf("elect: write blob %q: %w", name, err)
		}
		m.Chunks++
		if end == len(data) {
			break
		}
	}
	v, err := json.Marshal(m)
	if err != nil {
		return err
	}
	if _, err := l.txn(ctx, ls, api.TxnOps{{KV: &api.KVTxnOp{Verb: api.KVSet, Key: l.blobKey(name), Value: v}}}); err != nil {
		return err
	}
	keys, _, err := l.c.KV().Keys(l.opts.Key+"/blobs-data/"+name+"/", "/", (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return nil // the blob is published; old chunks go next time
	}
	for _, k := range keys {
		if k != prefix {
			_, _ = l.c.KV().DeleteTree(k, w)
		}
	}
	return nil
}

// ReadBlob reads the blob last published under name, and its checksum
// (which changes with its content); nil and "" when none was.
func (l *ConsulLock) ReadBlob(ctx context.Context, name string) (data []byte, sum string, err error) {
	q := (&api.QueryOptions{}).WithContext(ctx)
	pair, _, err := l.c.KV().Get(l.blobKey(name), q)
	if err != nil {
		return nil, "", fmt.Errorf("elect: read blob %q: %w", name, err)
	}
	if pair == nil {
		return nil, "", nil
	}
	var m blobManifest
	if err := json.Unmarshal(pair.Value, &m); err != nil {
		return nil, "", fmt.Errorf("elect: blob %q at %s: %w", name, pair.Key, err)
	}
	prefix := l.blobDataKey(name, m.SHA256)
	pairs, _, err := l.c.KV().List(prefix, q)
	if err != nil {
		return nil, "", fmt.Errorf("elect: read blob %q: %w", name, err)
	}
	chunks := make([][]byte, m.Chunks)
	for _, p := range pairs {
		i, err := strconv.Atoi(strings.TrimPrefix(p.Key, prefix))
		if err == nil && i >= 0 && i < m.Chunks {
			chunks[i] = p.Value
		}
	}
	data = make([]byte, 0, m.Size)
	for _, c := range chunks {
		data = append(data, c...)
	}
	if got := sha256.Sum256(data); hex.EncodeToString(got[:]) != m.SHA256 {
		// A newer blob replaced this one while it was read.
		return nil, "", fmt.Errorf("elect: blob %q: chunks under %s do not match their checksum", name, prefix)
	}
	return data, m.SHA256, nil
}
