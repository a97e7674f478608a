package targets

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/prometheus/discovery/targetgroup"

	"github.com/promshard/promshard/internal/sdfile"
	"github.com/promshard/promshard/internal/tstore"
)

// DefaultHTTPSDTimeout bounds one fetch of an [HTTPSD] provider.
const DefaultHTTPSDTimeout = 30 * time.Second

// maxHTTPBody caps the size of an http_sd answer.
const maxHTTPBody = 256 << 20

// DefaultMaxTargets caps the distinct targets of one http_sd answer. A
// target costs about 400 bytes once parsed (its label set), so the cap
// bounds a fetch to about 0.4 GB whatever the answer holds; duplicates
// cost nothing.
const DefaultMaxTargets = 1_000_000

// HTTPSDOptions configures an [HTTPSD] provider.
type HTTPSDOptions struct {
	// URL of the endpoint. Required, http or https.
	URL string
	// Client sends the requests, with its authentication and TLS: build it
	// from a Prometheus-style HTTP client config with
	// github.com/prometheus/common/config.NewClientFromConfig. Nil means a
	// plain client.
	Client *http.Client
	// Timeout bounds one fetch; zero means [DefaultHTTPSDTimeout].
	Timeout time.Duration
	// MaxTargets caps the distinct targets of an answer; more is an error
	// (the last good targets stay). Zero means [DefaultMaxTargets].
	MaxTargets int
}

// HTTPSD fetches targets from an endpoint in Prometheus' http_sd format: a
// 200 answer of type application/json holding a list of {targets, labels}.
// Each group's source is "URL:index".
//
// When the server tags its answers (ETag, Last-Modified), a fetch asks
// with If-None-Match and If-Modified-Since, and a 304 Not Modified answer
// returns the groups of the last answer, the very same ones: nothing is
// read or parsed, and a [Registry] keeps the groups it holds.
type HTTPSD struct {
	opts HTTPSDOptions

	mu   sync.Mutex
	last httpAnswer // the last good answer
}

// httpAnswer is a parsed answer with the validators the server gave it.
type httpAnswer struct {
	etag, modified string
	groups         []*tstore.Group
}

var _ Provider = (*HTTPSD)(nil)

// NewHTTPSD validates opts. It does no I/O.
func NewHTTPSD(opts HTTPSDOptions) (*HTTPSD, error) {
	u, err := url.Parse(opts.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("targets: HTTPSDOptions.URL %q: want an http or https URL", opts.URL)
	}
	if opts.Timeout < 0 {
		return nil, fmt.Errorf("targets: HTTPSDOptions.Timeout %v: must not be negative", opts.Timeout)
	}
	if opts.Timeout == 0 {
		opts.Timeout = DefaultHTTPSDTimeout
	}
	if opts.MaxTargets < 0 {
		return nil, fmt.Errorf("targets: HTTPSDOptions.MaxTargets %d: must not be negative", opts.MaxTargets)
	}
	opts.MaxTargets = cmp.Or(opts.MaxTargets, DefaultMaxTargets)
	if opts.Client == nil {
		opts.Client = &http.Client{}
	}
	return &HTTPSD{opts: opts}, nil
}

// Inherit takes over the last answer of prev, an HTTPSD this one replaces
// (a config reload) with the same URL: the first fetch then asks whether
// it changed. It reports whether it did.
func (h *HTTPSD) Inherit(prev any) bool {
	p, ok := prev.(*HTTPSD)
	if !ok || p == h || p.opts.URL != h.opts.URL {
		return false
	}
	p.mu.Lock()
	last := p.last
	p.mu.Unlock()
	h.mu.Lock()
	defer h.mu.Unlock()
	h.last = last
	return true
}

// Timeout is HTTPSDOptions.Timeout: a [Registry] lets a fetch run that long.
func (h *HTTPSD) Timeout() time.Duration { return h.opts.Timeout }

// Targets fetches and parses the endpoint's answer.
func (h *HTTPSD) Targets(ctx context.Context) ([]*targetgroup.Group, error) {
	gs, err := h.compactTargets(ctx)
	return tstore.All(gs), err
}

// compactTargets is Targets in the module's compact form, as a [Registry]
// asks for them: the answer is decoded into address strings, not a label
// set per target.
func (h *HTTPSD) compactTargets(ctx context.Context) ([]*tstore.Group, error) {
	ctx, cancel := context.WithTimeout(ctx, h.opts.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.opts.URL, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	h.mu.Lock()
	last := h.last
	h.mu.Unlock()
	conditional := last.groups != nil && (last.etag != "" || last.modified != "") // a 304 then means last.groups
	if conditional && last.etag != "" {
		req.Header.Set("If-None-Match", last.etag)
	}
	if conditional && last.modified != "" {
		req.Header.Set("If-Modified-Since", last.modified)
	}
	resp, err := h.opts.Client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", h.opts.URL, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotModified && conditional {
		return slices.Clone(last.groups), nil
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return nil, fmt.Errorf("GET %s: status %s: %s", h.opts.URL, resp.Status, strings.TrimSpace(string(b)))
	}
	if mt, _, err := mime.ParseMediaType(resp.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		return nil, fmt.Errorf("GET %s: content type %q, want application/json", h.opts.URL, resp.Header.Get("Content-Type"))
	}
	body := &countingReader{r: io.LimitReader(resp.Body, maxHTTPBody+1)}
	gs, err := sdfile.Decode(body, h.opts.MaxTargets)
	if body.n > maxHTTPBody {
		return nil, fmt.Errorf("GET %s: answer larger than %d bytes", h.opts.URL, maxHTTPBody)
	}
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", h.opts.URL, err)
	}
	for i, g := range gs {
		if g != nil {
			g.Source = fmt.Sprintf("%s:%d", h.opts.URL, i)
		}
	}
	h.mu.Lock()
	h.last = httpAnswer{etag: resp.Header.Get("ETag"), modified: resp.Header.Get("Last-Modified"), groups: gs}
	h.mu.Unlock()
	return slices.Clone(gs), nil
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}
