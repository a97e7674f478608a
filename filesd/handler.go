package filesd

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/prometheus/prometheus/discovery/targetgroup"

	"github.com/promshard/promshard/internal/sdfile"
	"github.com/promshard/promshard/internal/tstore"
)

// DefaultParam is the query parameter that names the collector.
const DefaultParam = "collector"

// DefaultRetain is how long a [Handler] answers an empty list to a
// collector that it no longer serves.
const DefaultRetain = 24 * time.Hour

// Handler serves each collector's target groups in Prometheus' http_sd
// format. A collector asks for its own with GET ...?collector=ID or with the
// ID as the path left after the handler's prefix (mount it with
// http.StripPrefix("/sd/", h) and ask for /sd/ID). Responses carry an ETag; a request with a
// matching If-None-Match gets 304.
//
// What a collector gets: its targets while it is served (a sharder serves
// an empty list to a collector out of the ring that is still registered);
// an empty list for Retain after it stopped being served (it left, or was
// deregistered), because Prometheus' http_sd keeps the last list on any
// error, so a collector that still runs would go on scraping targets that
// have new owners; 404 for a collector it never served (or served longer
// ago than Retain, or before this process started), so that a mistyped ID
// shows as a failing discovery.
//
// The zero Handler serves nothing (404 for everyone) until Set is called. It
// is safe for concurrent use.
type Handler struct {
	// Param is the query parameter naming the collector; empty means
	// [DefaultParam].
	Param string
	// Retain is how long a collector no longer served gets an empty list;
	// zero means [DefaultRetain], a negative value not at all.
	Retain time.Duration

	cur  atomic.Pointer[map[string]served]
	mu   sync.Mutex
	gone map[string]time.Time // collectors no longer served, since when
}

// empty is what a collector no longer served gets.
var empty = served{body: []byte("[]\n"), etag: strconv.Quote("empty")}

type served struct {
	body []byte
	etag string
}

// Set replaces what the handler serves. It validates every collector's
// groups first; on error nothing changes.
func (h *Handler) Set(groups map[string][]*targetgroup.Group) error {
	return h.set(tstore.FromAllOf(groups))
}

// set is Set over groups in the module's compact form.
func (h *Handler) set(groups map[string][]*tstore.Group) error {
	next := make(map[string]served, len(groups))
	for id, gs := range groups {
		b, err := sdfile.MarshalCompact(gs, JSON)
		if err != nil {
			return fmt.Errorf("filesd: http_sd for collector %q: %w", id, err)
		}
		next[id] = served{body: b, etag: strconv.Quote(strconv.FormatUint(xxhash.Sum64(b), 16))}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.gone == nil {
		h.gone = map[string]time.Time{}
	}
	if prev := h.cur.Load(); prev != nil {
		now := time.Now()
		for id := range *prev {
			if _, ok := next[id]; !ok {
				h.gone[id] = now
			}
		}
	}
	for id := range next {
		delete(h.gone, id)
	}
	h.cur.Store(&next)
	return nil
}

// retained reports whether id stopped being served less than Retain ago.
func (h *Handler) retained(id string) bool {
	keep := h.Retain
	if keep == 0 {
		keep = DefaultRetain
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	since, ok := h.gone[id]
	if ok && time.Since(since) >= keep {
		delete(h.gone, id)
		ok = false
	}
	return ok && keep > 0
}

// Update is [Handler.Set] as an output of a sharder: it returns the IDs
// of the collectors whose served content changed, appeared or disappeared.
func (h *Handler) Update(ctx context.Context, groups map[string][]*targetgroup.Group) ([]string, error) {
	return h.UpdateCompact(ctx, tstore.FromAllOf(groups))
}

// UpdateCompact is Update over groups in the module's compact form, as the
// Sharder holds them.
func (h *Handler) UpdateCompact(_ context.Context, groups map[string][]*tstore.Group) ([]string, error) {
	var prev map[string]served
	if cur := h.cur.Load(); cur != nil {
		prev = *cur
	}
	if err := h.set(groups); err != nil {
		return nil, err
	}
	next := *h.cur.Load()
	var changed []string
	for id, s := range next {
		if p, ok := prev[id]; !ok || p.etag != s.etag {
			changed = append(changed, id)
		}
	}
	for id := range prev {
		if _, ok := next[id]; !ok {
			changed = append(changed, id)
		}
	}
	slices.Sort(changed)
	return changed, nil
}

// Collectors returns the IDs the handler serves, sorted.
func (h *Handler) Collectors() []string {
	cur := h.cur.Load()
	if cur == nil {
		return nil
	}
	return slices.Sorted(maps.Keys(*cur))
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	param := h.Param
	if param == "" {
		param = DefaultParam
	}
	id := r.URL.Query().Get(param)
	if id == "" {
		id = strings.Trim(r.URL.Path, "/")
	}
	if id == "" {
		http.Error(w, fmt.Sprintf("name the collector: ?%s=ID or /ID", param), http.StatusBadRequest)
		return
	}
	var (
		s  served
		ok bool
	)
	if cur := h.cur.Load(); cur != nil {
		s, ok = (*cur)[id]
	}
	if !ok && h.retained(id) {
		s, ok = empty, true
	}
	if !ok {
		http.Error(w, fmt.Sprintf("unknown collector %q", id), http.StatusNotFound)
		return
	}
	w.Header().Set("ETag", s.etag)
	w.Header().Set("Cache-Control", "no-cache")
	if match := r.Header.Get("If-None-Match"); match != "" && match == s.etag {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(s.body)))
	if r.Method == http.MethodHead {
		return
	}
	_, _ = w.Write(s.body)
}
