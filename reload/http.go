package reload

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/promshard/promshard/internal/backoff"
)

// Defaults of [HTTPOptions].
const (
	DefaultHTTPTimeout = 30 * time.Second
	DefaultRetries     = 3
	DefaultBackoff     = 500 * time.Millisecond
	DefaultReloadPath  = "/-/reload"
)

// maxBackoff caps the wait between two attempts.
const maxBackoff = 30 * time.Second

// HTTPOptions configures an [HTTP] reloader. Zero values get the documented
// defaults.
type HTTPOptions struct {
	// Client sends the requests, with its authentication and TLS: build it
	// from a Prometheus-style HTTP client config with
	// github.com/prometheus/common/config.NewClientFromConfig, so that users
	// write basic_auth, authorization, oauth2 or tls_config as in a scrape
	// config. Nil means a plain client.
	Client *http.Client
	// Scheme is "http" (default) or "https".
	Scheme string
	// Path is the reload endpoint; default [DefaultReloadPath]. Include a
	// --web.route-prefix here.
	Path string
	// Timeout bounds one attempt; default [DefaultHTTPTimeout] (a reload of
	// a big configuration takes a while).
	Timeout time.Duration
	// Retries is the number of attempts after the first one for errors that
	// a retry can fix (connection errors, 429, 502, 503, 504); default
	// [DefaultRetries], -1 for none. Backoff is the first wait, doubled per
	// retry with jitter; default [DefaultBackoff].
	Retries int
	Backoff time.Duration
}

// HTTP reloads Prometheus with POST /-/reload.
type HTTP struct {
	opts HTTPOptions
}

var _ Reloader = (*HTTP)(nil)

// NewHTTP validates opts. It does no I/O.
func NewHTTP(opts HTTPOptions) (*HTTP, error) {
	if opts.Scheme == "" {
		opts.Scheme = "http"
	}
	if opts.Scheme != "http" && opts.Scheme != "https" {
		return nil, fmt.Errorf("reload: HTTPOptions.Scheme %q: want http or https", opts.Scheme)
	}
	if opts.Path == "" {
		opts.Path = DefaultReloadPath
	}
	if !strings.HasPrefix(opts.Path, "/") {
		return nil, fmt.Errorf("reload: HTTPOptions.Path %q: must start with /", opts.Path)
	}
	if opts.Timeout < 0 || opts.Backoff < 0 || opts.Retries < -1 {
		return nil, fmt.Errorf("reload: HTTPOptions Timeout %v, Backoff %v, Retries %d: must not be negative", opts.Timeout, opts.Backoff, opts.Retries)
	}
	if opts.Timeout == 0 {
		opts.Timeout = DefaultHTTPTimeout
	}
	if opts.Backoff == 0 {
		opts.Backoff = DefaultBackoff
	}
	switch opts.Retries {
	case 0:
		opts.Retries = DefaultRetries
	case -1:
		opts.Retries = 0
	}
	if opts.Client == nil {
		opts.Client = &http.Client{}
	}
	return &HTTP{opts: opts}, nil
}

// retryable marks errors that another attempt may fix.
type retryable struct{ error }

func (r retryable) Unwrap() error { return r.error }

// Reload posts to the collector's reload endpoint until it succeeds, fails
// for good, runs out of retries, or ctx is done.
func (h *HTTP) Reload(ctx context.Context, c Collector) error {
	if c.Address == "" {
		return fmt.Errorf("reload: collector %q has no address", c.ID)
	}
	u := (&url.URL{Scheme: h.opts.Scheme, Host: c.Address, Path: h.opts.Path}).String()
	for attempt := 0; ; attempt++ {
		err := h.post(ctx, u)
		var r retryable
		if err == nil || !errors.As(err, &r) || attempt >= h.opts.Retries || ctx.Err() != nil {
			if err != nil {
				return fmt.Errorf("reload %s (attempt %d): %w", u, attempt+1, unwrapRetry(err))
			}
			return nil
		}
		if !backoff.Sleep(ctx, backoff.Delay(h.opts.Backoff, maxBackoff, attempt+1)) {
			return fmt.Errorf("reload %s: %w (last error: %v)", u, ctx.Err(), unwrapRetry(err))
		}
	}
}

func unwrapRetry(err error) error {
	var r retryable
	if errors.As(err, &r) {
		return r.error
	}
	return err
}

func (h *HTTP) post(ctx context.Context, u string) error {
	ctx, cancel := context.WithTimeout(ctx, h.opts.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, nil)
	if err != nil {
		return err
	}
	resp, err := h.opts.Client.Do(req)
	if err != nil {
		return retryable{err}
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	msg := strings.TrimSpace(string(body))
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return nil
	case resp.StatusCode == http.StatusForbidden && strings.Contains(strings.ToLower(msg), "lifecycle"):
		return ErrLifecycleDisabled
	case resp.StatusCode == http.StatusInternalServerError:
		return fmt.Errorf("%w: status %s: %s", ErrReloadFailed, resp.Status, msg)
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusBadGateway ||
		resp.StatusCode == http.StatusServiceUnavailable || resp.StatusCode == http.StatusGatewayTimeout:
		return retryable{fmt.Errorf("status %s: %s", resp.Status, msg)}
	default:
		return fmt.Errorf("status %s: %s", resp.Status, msg)
	}
}
