package audit

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/discovery/targetgroup"
	"golang.org/x/sync/errgroup"

	"github.com/promshard/promshard/internal/tstore"
)

// State is what the audit found for a target; see the package docs.
type State string

// The states, in the order reports list them.
const (
	OK        State = "ok"
	Missing   State = "missing"
	Orphan    State = "orphan"
	Extra     State = "extra"
	Down      State = "down"
	InTransit State = "in_transit"
	Unknown   State = "unknown"
)

// States lists every state.
func States() []State { return []State{OK, Missing, Orphan, Extra, Down, InTransit, Unknown} }

// Defaults of [Options].
const (
	DefaultTimeout     = 10 * time.Second
	DefaultConcurrency = 16
	// DefaultGrace is a collector's discovery tick (5 s) plus two of
	// Prometheus' default scrape intervals (1 m).
	DefaultGrace = 5*time.Second + 2*time.Minute
)

// Options configures an [Auditor]. Zero values get the defaults.
type Options struct {
	// Client reads the collectors' APIs: set it for TLS and authentication
	// (for instance from a prometheus/common/config.HTTPClientConfig). Nil
	// means a plain client. Timeout bounds each read regardless.
	Client *http.Client
	// Timeout bounds the read of one collector; default [DefaultTimeout].
	Timeout time.Duration
	// Concurrency bounds the collectors read at once; default
	// [DefaultConcurrency].
	Concurrency int
	// Grace is how long after its intended collectors change a target is
	// in transit rather than wrong; default [DefaultGrace]. Set it to the
	// collectors' discovery tick plus two scrape intervals.
	Grace time.Duration
	// Logger receives a line per collector that did not answer; nil
	// discards.
	Logger *slog.Logger
	// Registerer receives the metrics; nil registers none.
	Registerer prometheus.Registerer
}

func (o *Options) validate() error {
	switch {
	case o.Timeout < 0:
		return fmt.Errorf("audit: Options.Timeout %v: must not be negative", o.Timeout)
	case o.Concurrency < 0:
		return fmt.Errorf("audit: Options.Concurrency %d: must not be negative", o.Concurrency)
	case o.Grace < 0:
		return fmt.Errorf("audit: Options.Grace %v: must not be negative", o.Grace)
	}
	o.Timeout = cmp.Or(o.Timeout, DefaultTimeout)
	o.Concurrency = cmp.Or(o.Concurrency, DefaultConcurrency)
	o.Grace = cmp.Or(o.Grace, DefaultGrace)
	if o.Client == nil {
		o.Client = &http.Client{}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// Collector is a collector to read: its member ID in the assignment and the
// base URL of its Prometheus (http://host:9090, with a route prefix if it
// has one).
type Collector struct {
	ID  string
	URL string
}

// Job is what to audit: a job's intended assignment and the collectors to
// ask. Ask every collector that might scrape the job's targets: the
// assignment's members, and collectors that left but may still run (they
// show up as [Extra]).
type Job struct {
	// Name is the job's name, a metric label. Required.
	Name string
	// ScrapePool is the collectors' scrape job that reads the job's targets
	// (its job_name); empty means Name.
	ScrapePool string
	// Assignment maps member IDs to their target groups.
	Assignment map[string][]*targetgroup.Group
	// Compact is Assignment in the module's compact form, as a Sharder
	// holds it; when set, Assignment is not read.
	Compact map[string][]*tstore.Group
	// Collectors are read; one missing from Assignment intends nothing.
	Collectors []Collector
	// Unplaced are targets that the assignment left without collectors on
	// purpose (no collector had room for them within its cap). Those that
	// no collector holds are reported: as [Orphan] while nobody scrapes
	// them, as [Extra] where one does.
	Unplaced []string
	// Generation, when not zero, changes whenever Assignment does (a
	// Sharder's assignment generation). An audit whose Generation equals
	// the last one's skips finding which targets moved, which at a million
	// targets is most of its own work; zero means look every time.
	Generation uint64
}

// Scrape is a collector's view of one target.
type Scrape struct {
	Collector  string    `json:"collector"`
	Health     string    `json:"health"`
	LastScrape time.Time `json:"last_scrape"`
	LastError  string    `json:"last_error,omitempty"`
}

// Target is one target that is not [OK].
type Target struct {
	Address  string   `json:"address"`
	States   []State  `json:"states"`
	Intended []string `json:"intended"`
	Scrapes  []Scrape `json:"scrapes"`
}

// Report is the result of one audit of one job.
type Report struct {
	Job  string        `json:"job"`
	Time time.Time     `json:"time"`
	Took time.Duration `json:"took_ns"`
	// Targets counts the distinct targets: intended, or scraped in the
	// job's scrape pool.
	Targets int `json:"targets"`
	// Counts holds, for every state, the targets that have it.
	Counts map[State]int `json:"counts"`
	// Problems lists the targets that are not OK, sorted by address.
	Problems []Target `json:"problems"`
	// Unreachable maps each collector that did not answer to its error.
	Unreachable map[string]string `json:"unreachable"`

	seen  map[string]map[string]Scrape // collector -> address -> its scrape
	order []string                     // the keys of seen, sorted
}

// OK reports whether every target is scraped exactly as intended (or in
// transit) and every collector answered.
func (r *Report) OK() bool {
	return r.Counts[Missing]+r.Counts[Orphan]+r.Counts[Extra]+r.Counts[Down]+r.Counts[Unknown] == 0
}

// Filter returns the problems that have state s.
func (r *Report) Filter(s State) []Target {
	var out []Target
	for _, t := range r.Problems {
		if slices.Contains(t.States, s) {
			out = append(out, t)
		}
	}
	return out
}

// Scrapes returns who scrapes the target with address addr, as read,
// sorted by collector.
func (r *Report) Scrapes(addr string) []Scrape {
	out := []Scrape{}
	for _, id := range r.order {
		if s, ok := r.seen[id][addr]; ok {
			out = append(out, s)
		}
	}
	return out
}

// Auditor audits jobs. It remembers, per job, when each target's intended
// collectors last changed (for the grace period). It is safe for concurrent
// use; audits of one job are serialised.
type Auditor struct {
	opts Options
	m    *metrics

	mu    sync.Mutex
	jobs  map[string]*jobState
	sizes map[string]int // targets per collector at its last read
}

type jobState struct {
	mu     sync.Mutex
	first  time.Time            // the job's first audit
	gen    uint64               // the Generation of the last audit
	owners map[string]uint64    // address -> hash of intended collectors
	spare  map[string]uint64    // the previous owners map, to fill next time
	moved  map[string]time.Time // address -> when they last changed, within Grace
}

// New validates opts and registers the metrics.
func New(opts Options) (*Auditor, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, err
	}
	return &Auditor{opts: opts, m: m, jobs: map[string]*jobState{}, sizes: map[string]int{}}, nil
}

// Grace is the grace period in use.
func (a *Auditor) Grace() time.Duration { return a.opts.Grace }

// maxAnswer caps the size of one collector's answer.
const maxAnswer = 1 << 30

// Read returns what a collector scrapes in a scrape pool, by target
// address, within the Auditor's timeout. It asks for the active targets of
// the pool only (GET /api/v1/targets?state=active&scrapePool=POOL; a
// Prometheus older than 2.42 ignores scrapePool and the pool is filtered
// here) and decodes only the fields the audit uses: client_golang's
// API.Targets decodes every label of every target, dropped ones included,
// and costs several times as much (see the package benchmark).
func (a *Auditor) Read(ctx context.Context, c Collector, pool string) (map[string]Scrape, error) {
	ctx, cancel := context.WithTimeout(ctx, a.opts.Timeout)
	defer cancel()
	u, err := url.Parse(c.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("audit: collector %q URL %q: want http(s)://host:port", c.ID, c.URL)
	}
	u = u.JoinPath("api", "v1", "targets")
	u.RawQuery = url.Values{"state": {"active"}, "scrapePool": {pool}}.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, fmt.Errorf("audit: collector %q: %w", c.ID, err)
	}
	resp, err := a.opts.Client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("audit: collector %q: %w", c.ID, err)
	}
	defer resp.Body.Close()
	buf := bodies.Get().(*bytes.Buffer)
	defer bodies.Put(buf)
	if err := readBody(buf, resp, maxAnswer); err != nil {
		return nil, fmt.Errorf("audit: collector %q: GET %s: %w", c.ID, u.Redacted(), err)
	}
	var out map[string]Scrape
	reset := func() { out = make(map[string]Scrape, a.sizeHint(c.ID)) }
	reset()
	ans, derr := decodeAnswer(buf.Bytes(), func(t *activeTarget) {
		if t.ScrapePool != pool || t.Address == "" {
			return
		}
		if old, ok := out[t.Address]; !ok || old.Health != healthUp { // one up scrape of an address is enough
			out[t.Address] = Scrape{Collector: c.ID, Health: t.Health, LastScrape: t.LastScrape, LastError: t.LastError}
		}
	}, reset)
	switch {
	case resp.StatusCode/100 != 2 && ans.Error != "":
		return nil, fmt.Errorf("audit: collector %q: GET %s: %s: %s: %s", c.ID, u.Redacted(), resp.Status, ans.ErrorType, ans.Error)
	case resp.StatusCode/100 != 2:
		return nil, fmt.Errorf("audit: collector %q: GET %s: %s", c.ID, u.Redacted(), resp.Status)
	case derr != nil:
		return nil, fmt.Errorf("audit: collector %q: GET %s: bad answer: %w", c.ID, u.Redacted(), derr)
	case ans.Status != "success":
		return nil, fmt.Errorf("audit: collector %q: GET %s: status %q", c.ID, u.Redacted(), ans.Status)
	}
	a.mu.Lock()
	a.sizes[c.ID] = len(out)
	a.mu.Unlock()
	return out, nil
}

// sizeHint is how many targets a collector had at its last read: a map of
// ten thousand entries grown from nothing costs more than the decoding.
func (a *Auditor) sizeHint(id string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.sizes[id]
}

// bodies keeps answer buffers between audits: an audit reads the same
// collectors every time, so a buffer grown once is the right size after.
var bodies = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// readBody reads a whole answer, at most limit bytes, into buf.
func readBody(buf *bytes.Buffer, resp *http.Response, limit int64) error {
	buf.Reset()
	if n := resp.ContentLength; n > 0 && n <= limit {
		buf.Grow(int(n) + 1)
	}
	if _, err := buf.ReadFrom(io.LimitReader(resp.Body, limit+1)); err != nil {
		return err
	}
	if int64(buf.Len()) > limit {
		return fmt.Errorf("answer larger than %d bytes", limit)
	}
	return nil
}

// healthUp is Prometheus' health of a target whose last scrape worked.
const healthUp = "up"

// Audit reads the collectors and compares what they scrape with the
// assignment. A collector that does not answer makes its targets
// [Unknown]; Audit fails only when ctx ends or the job is malformed.
func (a *Auditor) Audit(ctx context.Context, job Job) (*Report, error) {
	if job.Name == "" {
		return nil, errors.New("audit: Job.Name is empty")
	}
	pool := cmp.Or(job.ScrapePool, job.Name)
	start := time.Now()
	st := a.state(job.Name)
	st.mu.Lock()
	defer st.mu.Unlock()

	seen := make([]map[string]Scrape, len(job.Collectors))
	errs := make([]error, len(job.Collectors))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(a.opts.Concurrency)
	for i, c := range job.Collectors {
		g.Go(func() error {
			seen[i], errs[i] = a.Read(gctx, c, pool)
			return nil
		})
	}
	_ = g.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	rep := &Report{Job: job.Name, Time: start, Counts: map[State]int{}, Unreachable: map[string]string{},
		seen: map[string]map[string]Scrape{}}
	for i, c := range job.Collectors {
		if errs[i] != nil {
			rep.Unreachable[c.ID] = errs[i].Error()
			a.m.errors.WithLabelValues(job.Name, c.ID).Inc()
			a.opts.Logger.Warn("audit: a collector did not answer", "job", job.Name, "collector", c.ID, "err", errs[i])
			continue
		}
		rep.seen[c.ID] = seen[i]
	}

	asg := job.Compact
	if asg == nil {
		asg = tstore.FromAllOf(job.Assignment)
	}
	a.compare(rep, st, asg, job.Generation)
	a.unplaced(rep, asg, job.Unplaced)
	rep.Took = time.Since(start)
	a.m.observe(rep)
	return rep, nil
}

// compare judges every target of the assignment and every target a
// collector that answered scrapes, filling rep (whose seen holds the reads).
func (a *Auditor) compare(rep *Report, st *jobState, asg map[string][]*tstore.Group, gen uint64) {
	start := rep.Time
	same := gen != 0 && gen == st.gen // the targets did not move since the last audit
	rep.order = slices.Sorted(maps.Keys(rep.seen))

	// One pass per member over its share: what it should and does scrape.
	// Only targets with a problem get a record of their own.
	flags := map[string]uint8{}
	owners := st.spare // reused: a map of a million keys is costly to grow anew
	switch {
	case same:
		owners = st.owners
	case owners == nil:
		owners = make(map[string]uint64, len(st.owners))
	default:
		clear(owners)
	}
	for id, gs := range asg {
		got, answered := rep.seen[id]
		mh := xxhash.Sum64String(id)
		matched := 0
		for _, g := range gs {
			for _, addr := range g.Targets {
				if !same {
					owners[addr] += mh // an order-independent fingerprint of the intended set
				}
				s, scraped := got[addr]
				switch {
				case !answered:
					flags[addr] |= fUnknown
				case !scraped:
					flags[addr] |= fMissing
				default:
					matched++
					if s.Health != healthUp {
						flags[addr] |= fDown
					}
				}
			}
		}
		if answered && matched < len(got) {
			markExtra(flags, got, gs)
		}
	}
	for id, got := range rep.seen {
		if _, ok := asg[id]; !ok {
			markExtra(flags, got, nil) // a collector without a share scrapes nothing rightly
		}
	}
	if same {
		st.prune(start, a.opts.Grace)
	} else {
		st.track(owners, start, a.opts.Grace)
		st.gen = gen
	}
	rep.Targets = len(owners)
	for addr := range flags {
		if _, ok := owners[addr]; !ok {
			rep.Targets++
		}
	}
	rep.Problems = a.problems(rep, st, flags, asg, start)
	rep.Counts[OK] = rep.Targets - len(rep.Problems)
}

// unplaced adds the targets that the assignment gives to no collector and
// that nobody scrapes to rep, as orphans (one that is scraped is already
// extra; one with fewer collectors than replicas is judged by those).
func (a *Auditor) unplaced(rep *Report, asg map[string][]*tstore.Group, addrs []string) {
	if len(addrs) == 0 {
		return
	}
	left := make(map[string]bool, len(addrs))
	for _, addr := range addrs {
		left[addr] = true
	}
	for _, gs := range asg {
		for _, g := range gs {
			for _, addr := range g.Targets {
				delete(left, addr)
			}
		}
	}
	for _, addr := range slices.Sorted(maps.Keys(left)) {
		if len(rep.Scrapes(addr)) > 0 {
			continue
		}
		rep.Targets++
		rep.Counts[Orphan]++
		rep.Problems = append(rep.Problems, Target{Address: addr, States: []State{Orphan}, Intended: []string{},
			Scrapes: []Scrape{}})
	}
	slices.SortFunc(rep.Problems, func(x, y Target) int { return cmp.Compare(x.Address, y.Address) })
}

// Problem flags of a target.
const (
	fMissing uint8 = 1 << iota
	fExtra
	fDown
	fUnknown
)

// markExtra flags what a collector scrapes outside its share gs.
func markExtra(flags map[string]uint8, got map[string]Scrape, gs []*tstore.Group) {
	mine := make(map[string]bool)
	for _, g := range gs {
		for _, addr := range g.Targets {
			mine[addr] = true
		}
	}
	for addr := range got {
		if !mine[addr] {
			flags[addr] |= fExtra
		}
	}
}

// problems turns the flags into the report's sorted list of targets that
// are not OK, counting each state.
func (a *Auditor) problems(rep *Report, st *jobState, flags map[string]uint8, asg map[string][]*tstore.Group,
	now time.Time) []Target {
	if len(flags) == 0 {
		return nil
	}
	intended := map[string][]string{}
	for _, id := range slices.Sorted(maps.Keys(asg)) {
		for _, g := range asg[id] {
			for _, addr := range g.Targets {
				if _, bad := flags[addr]; bad && !slices.Contains(intended[addr], id) {
					intended[addr] = append(intended[addr], id)
				}
			}
		}
	}
	settling := now.Sub(st.first) < a.opts.Grace
	out := make([]Target, 0, len(flags))
	for _, addr := range slices.Sorted(maps.Keys(flags)) {
		f := flags[addr]
		t := Target{Address: addr, Intended: intended[addr], Scrapes: rep.Scrapes(addr)}
		if t.Intended == nil {
			t.Intended = []string{}
		}
		if f&fMissing != 0 {
			t.States = append(t.States, Missing)
			if len(t.Scrapes) == 0 && f&fUnknown == 0 {
				t.States = append(t.States, Orphan)
			}
		}
		if f&fExtra != 0 {
			t.States = append(t.States, Extra)
		}
		if f&fDown != 0 {
			t.States = append(t.States, Down)
		}
		if f&fUnknown != 0 {
			t.States = append(t.States, Unknown)
		} else if at, ok := st.moved[addr]; settling || ok && now.Sub(at) < a.opts.Grace {
			t.States = []State{InTransit}
		}
		for _, s := range t.States {
			rep.Counts[s]++
		}
		out = append(out, t)
	}
	return out
}

func (a *Auditor) state(job string) *jobState {
	a.mu.Lock()
	defer a.mu.Unlock()
	st, ok := a.jobs[job]
	if !ok {
		st = &jobState{owners: map[string]uint64{}, moved: map[string]time.Time{}}
		a.jobs[job] = st
	}
	return st
}

// track records when each target's intended collectors changed (by their
// fingerprint). Until Grace after the job's first audit every target counts
// as just moved (see problems), as the audit cannot know how long ago a
// fresh process wrote its files; after that a target that appears counts
// as moved too.
func (st *jobState) track(owners map[string]uint64, now time.Time, grace time.Duration) {
	first := st.first.IsZero()
	if first {
		st.first = now
	}
	added := 0
	for addr, h := range owners {
		old, ok := st.owners[addr]
		if !ok {
			added++
		}
		if !first && (!ok || old != h) {
			st.moved[addr] = now
		}
	}
	if len(owners)-added != len(st.owners) { // some left the pool: their collectors drop them within the grace
		for addr := range st.owners {
			if _, ok := owners[addr]; !ok {
				st.moved[addr] = now
			}
		}
	}
	st.owners, st.spare = owners, st.owners
	st.prune(now, grace)
}

// prune forgets moves older than the grace.
func (st *jobState) prune(now time.Time, grace time.Duration) {
	for addr, at := range st.moved {
		if now.Sub(at) >= grace {
			delete(st.moved, addr)
		}
	}
}
