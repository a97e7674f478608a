package promshard

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	"github.com/promshard/promshard/elect"
)

// Elector is the leader election of central mode run as several copies;
// [elect.ConsulLock] is the one promshard has. With Options.Elector, only
// the leader writes the outputs and reloads collectors. The other copies
// (standbys) keep watching members and targets and keep their computed
// assignment warm, so that a copy that becomes leader writes at once.
//
// Jobs in self mode (Job.Self) are not elected: each copy writes its own
// collector's file. They only read the published epoch, to report whether
// they agree with it.
type Elector interface {
	// Run campaigns until ctx ends and sends on changed each time this
	// copy becomes leader or stops being one (see the Run contract in the
	// package doc).
	Run(ctx context.Context, changed chan<- struct{}) error
	// Leading reports this copy's own view, without I/O.
	Leading() bool
	// Leader names the current leader, as last seen.
	Leader() string
	// Check returns nil only if this copy leads right now, asked of the
	// source of truth: the fence before each write and each reload batch.
	Check(ctx context.Context) error
	// Publish records a job's next epoch, atomically with the check that
	// this copy leads, and returns it numbered.
	Publish(ctx context.Context, e elect.Epoch) (elect.Epoch, error)
	// Published reads the last epoch published for a job (zero if none).
	Published(ctx context.Context, job string) (elect.Epoch, error)
}

// BlobStore keeps named bytes that the leader publishes and every copy
// reads, as [elect.ConsulLock] does: a job balanced by series keeps its
// cost table there (Options.Store), so that standbys and copies in self
// mode place targets with the leader's costs.
type BlobStore interface {
	PublishBlob(ctx context.Context, name string, data []byte) error
	ReadBlob(ctx context.Context, name string) (data []byte, sum string, err error)
}

var (
	_ Elector   = (*elect.ConsulLock)(nil)
	_ BlobStore = (*elect.ConsulLock)(nil)
)

// planHash names the plan of an input key in published epochs: the same
// inputs give the same assignment on every copy.
func planHash(key uint64) string { return fmt.Sprintf("%016x", key) }

// epochs is what a job knows of its published epochs: the plan this copy
// last published, in which term, and the last epoch seen.
type epochs struct {
	job string
	el  Elector
	m   *metrics
	log *slog.Logger

	mu      sync.Mutex
	pubKey  uint64 // plan this copy last published, in term pubTerm
	pubTerm uint64
	last    elect.Epoch
	agrees  bool
}

// fence is called by a leader right before it writes: it publishes a new
// epoch when the plan (key, for members ids) changed since this copy last
// published in this term, and otherwise checks that it still leads. An
// error means: write nothing.
func (e *epochs) fence(ctx context.Context, term, key uint64, ids []string) error {
	e.mu.Lock()
	same := key == e.pubKey && term == e.pubTerm
	e.mu.Unlock()
	if same {
		return e.el.Check(ctx)
	}
	ep, err := e.el.Publish(ctx, elect.Epoch{Job: e.job, Members: ids, Hash: planHash(key)})
	if err != nil {
		return err
	}
	e.mu.Lock()
	e.pubKey, e.pubTerm = key, term
	e.mu.Unlock()
	e.set(ep, true)
	e.log.Info("published epoch", "job", e.job, "epoch", ep.Epoch, "hash", ep.Hash, "collectors", len(ids))
	return nil
}

// read reads the published epoch, on a copy that does not publish, and
// records whether this copy's plan (key) is that epoch's.
func (e *epochs) read(ctx context.Context, key uint64) {
	ep, err := e.el.Published(ctx, e.job)
	if err != nil {
		e.log.Warn("reading the published epoch failed", "job", e.job, "err", err)
		return
	}
	e.set(ep, ep.Epoch > 0 && ep.Hash == planHash(key))
}

func (e *epochs) set(ep elect.Epoch, agrees bool) {
	e.mu.Lock()
	e.last, e.agrees = ep, agrees
	e.mu.Unlock()
	e.m.epoch.WithLabelValues(e.job).Set(float64(ep.Epoch))
}

// current is the last epoch seen and whether this copy's plan is it.
func (e *epochs) current() (elect.Epoch, bool) {
	if e == nil {
		return elect.Epoch{}, false
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.last, e.agrees
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
