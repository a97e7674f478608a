package audit

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/api"
	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"
)

// DefaultSeriesWindow is how far back Series looks for a target's most
// series: an hour, so that a momentary spike or dip moves nothing.
const DefaultSeriesWindow = time.Hour

// Series reads what each target of a scrape pool costs: the most samples
// one scrape of it yielded after metric relabelling over the last window
// (default [DefaultSeriesWindow]), as its collectors' Prometheus report it
// through the query API:
//
//	max by (instance) (max_over_time(scrape_samples_post_metric_relabeling{job="POOL"}[WINDOW]))
//
// keyed by the instance label, which is the target's address unless the
// scrape job relabels instance (a target not found costs the median, see
// shard.Options.Costs). A target scraped by several collectors counts its
// largest figure. Collectors are read at once, up to Options.Concurrency,
// each within Options.Timeout; the error joins those that failed, and the
// costs read from the others are returned with it.
func (a *Auditor) Series(ctx context.Context, collectors []Collector, pool string, window time.Duration) (map[string]uint64, error) {
	if window <= 0 {
		window = DefaultSeriesWindow
	}
	q := fmt.Sprintf(`max by (instance) (max_over_time(scrape_samples_post_metric_relabeling{job=%s}[%s]))`,
		strconv.Quote(pool), model.Duration(window))
	out := map[string]uint64{}
	var mu sync.Mutex
	var errs []error
	sem := make(chan struct{}, a.opts.Concurrency)
	var wg sync.WaitGroup
	for _, c := range collectors {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			got, err := a.series(ctx, c, q)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			for inst, n := range got {
				out[inst] = max(out[inst], n)
			}
		})
	}
	wg.Wait()
	return out, errors.Join(errs...)
}

// series runs the query on one collector.
func (a *Auditor) series(ctx context.Context, c Collector, query string) (map[string]uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, a.opts.Timeout)
	defer cancel()
	client, err := api.NewClient(api.Config{Address: c.URL, Client: a.opts.Client})
	if err != nil {
		return nil, fmt.Errorf("audit: collector %q URL %q: %w", c.ID, c.URL, err)
	}
	val, _, _, err := v1.NewAPI(client).Query(ctx, query, time.Now())
	if err != nil {
		return nil, fmt.Errorf("audit: collector %q: series: %w", c.ID, err)
	}
	vec, ok := val.(model.Vector)
	if !ok {
		return nil, fmt.Errorf("audit: collector %q: series: a %s, want a vector", c.ID, val.Type())
	}
	out := make(map[string]uint64, len(vec))
	for _, s := range vec {
		if inst := string(s.Metric["instance"]); inst != "" && s.Value >= 0 {
			out[inst] = uint64(s.Value)
		}
	}
	return out, nil
}
