package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery/targetgroup"

	"github.com/promshard/promshard/filesd"
	"github.com/promshard/promshard/reload"
	"github.com/promshard/promshard/shard"
	"github.com/promshard/promshard/watch"
)

// job reshards one job: its collectors, its targets, its files.
type job struct {
	app     *app
	cfg     *JobConfig
	dir     *filesd.Dir     // nil without file output
	handler *filesd.Handler // nil without http_sd
	pool    *reload.Pool
	trigger chan struct{} // size 1: coalesces pokes

	mu          sync.Mutex
	members     []watch.Member
	haveMembers bool
	haveCh      chan struct{} // closed at the first member set; made with the job
	reasons     map[string]bool

	stateMu  sync.RWMutex
	last     *shard.Assignment
	ring     shard.Ring
	lastAddr map[string]string // member ID → host:port of the last reshard
}

func (j *job) setMembers(ms []watch.Member) {
	j.mu.Lock()
	j.members = ms
	if !j.haveMembers {
		j.haveMembers = true
		close(j.haveCh)
	}
	j.mu.Unlock()
	j.poke("members")
}

func (j *job) poke(reason string) {
	j.mu.Lock()
	if j.reasons == nil {
		j.reasons = map[string]bool{}
	}
	j.reasons[reason] = true
	j.mu.Unlock()
	select {
	case j.trigger <- struct{}{}:
	default:
	}
}

func (j *job) takeReasons() string {
	j.mu.Lock()
	defer j.mu.Unlock()
	rs := slices.Sorted(maps.Keys(j.reasons))
	clear(j.reasons)
	if len(rs) == 0 {
		return "timer"
	}
	return fmt.Sprint(rs)
}

// waitMembers waits for the first member set.
func (j *job) waitMembers(ctx context.Context) error {
	select {
	case <-j.haveCh:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// loop reshards on every poke (members or targets changed) and on the
// refresh timer, until ctx is done.
func (j *job) loop(ctx context.Context) {
	t := time.NewTicker(j.app.cfg.refresh)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-j.trigger:
		case <-t.C:
		}
		j.mu.Lock()
		have := j.haveMembers
		j.mu.Unlock()
		if !have {
			continue // nothing to shard over yet
		}
		if err := j.reshard(ctx, j.takeReasons()); err != nil && ctx.Err() == nil {
			j.app.log.Error("reshard failed; files stay as they are", "job", j.cfg.Name, "err", err)
		}
	}
}

// reshard computes the assignment and writes and reloads what changed.
func (j *job) reshard(ctx context.Context, reason string) (err error) {
	a, name := j.app, j.cfg.Name
	start := time.Now()
	defer func() {
		result := "success"
		if err != nil {
			result = "error"
		}
		a.m.reshards.WithLabelValues(name, result).Inc()
		a.m.duration.WithLabelValues(name).Observe(time.Since(start).Seconds())
	}()
	j.mu.Lock()
	members := j.members
	j.mu.Unlock()

	res, terr := a.targets.Targets(ctx, name)
	if terr != nil {
		if res.Fetched.IsZero() {
			return fmt.Errorf("job %q: %w", name, terr)
		}
		a.log.Warn("target provider failed; using its last good targets", "job", name,
			"age", res.Age(time.Now()).Round(time.Second), "err", terr)
	}
	sms := make([]shard.Member, len(members))
	addrs := make(map[string]string, len(members))
	for i, m := range members {
		sms[i] = shard.Member{ID: m.ID, Weight: m.Weight}
		addrs[m.ID] = m.HostPort()
	}
	if len(sms) == 0 {
		return fmt.Errorf("job %q: no healthy collectors: %w", name, shard.ErrNoMembers)
	}
	ring, err := shard.New(j.cfg.ring, sms)
	if err != nil {
		return fmt.Errorf("job %q: %w", name, err)
	}
	asg, err := shard.Assign(ring, res.Groups, shard.Options{Replicas: j.cfg.Replicas, KeyLabel: model.LabelName(j.cfg.ShardKey)})
	if err != nil {
		return fmt.Errorf("job %q: %w", name, err)
	}
	j.stateMu.RLock()
	prev, prevAddr := j.last, j.lastAddr
	j.stateMu.RUnlock()
	diff := shard.Compare(prev, asg)

	changed, werr := j.write(asg)
	if j.handler != nil {
		if err := j.handler.Set(asg.Groups); err != nil {
			werr = errors.Join(werr, err)
		}
	}
	j.stateMu.Lock()
	j.last, j.ring, j.lastAddr = asg, ring, addrs
	j.stateMu.Unlock()
	if werr != nil {
		return fmt.Errorf("job %q: write: %w", name, werr)
	}
	var reloaded reload.Results
	if len(changed) > 0 && !a.flags.DryRun {
		reloaded = j.pool.Reload(ctx, j.collectors(changed, addrs, prevAddr))
	}

	a.m.moved.WithLabelValues(name).Add(float64(diff.Moved))
	a.m.lastSuccess.WithLabelValues(name).SetToCurrentTime()
	for id := range prevAddr {
		if _, ok := addrs[id]; !ok {
			a.m.perCollector.DeleteLabelValues(name, id)
			j.pool.Forget(id)
		}
	}
	for _, m := range asg.Members {
		a.m.perCollector.WithLabelValues(name, m.ID).Set(float64(asg.Count(m.ID)))
	}
	a.log.Info("reshard", "job", name, "reason", reason, "collectors", len(asg.Members), "targets", asg.Targets,
		"replicas", asg.Replicas, "added", diff.Added, "removed", diff.Removed, "moved", diff.Moved,
		"files_changed", len(changed), "reload_failed", len(reloaded.Failed()), "took", time.Since(start).Round(time.Microsecond))
	if asg.Degraded() {
		a.log.Warn("fewer collectors than replicas: every collector scrapes everything", "job", name,
			"replicas", asg.RequestedReplicas, "collectors", len(asg.Members))
	}
	return reloaded.Err()
}

// write writes the files: every collector's (central mode) or only this
// host's (self mode). It returns the IDs whose files changed.
func (j *job) write(asg *shard.Assignment) ([]string, error) {
	if j.dir == nil || j.app.flags.DryRun {
		return nil, nil
	}
	self := j.app.flags.Member
	if self == "" {
		res, err := j.dir.Sync(asg.Groups)
		return res.Changed(), err
	}
	// Self mode: only our file, and [] when we are not a healthy member,
	// so that our old targets are not scraped twice.
	path, err := j.dir.Path(self)
	if err != nil {
		return nil, err
	}
	groups := asg.Groups[self]
	if groups == nil {
		groups = []*targetgroup.Group{}
	}
	changed, err := filesd.WriteFile(path, groups, filesd.WriteOptions{Format: filesd.Format(j.cfg.Output.Format)})
	if err != nil || !changed {
		return nil, err
	}
	return []string{self}, nil
}

// collectors describes the collectors to reload.
func (j *job) collectors(ids []string, addrs, prevAddr map[string]string) []reload.Collector {
	var out []reload.Collector
	for _, id := range ids {
		addr, ok := addrs[id]
		if !ok {
			addr, ok = prevAddr[id]
		}
		if !ok {
			addr = j.app.configuredAddress(j.cfg, id)
		}
		if addr == "" {
			j.app.log.Warn("no address to reload collector", "job", j.cfg.Name, "collector", id)
			continue
		}
		file := ""
		if j.dir != nil {
			file, _ = j.dir.Path(id)
		}
		out = append(out, reload.Collector{ID: id, Address: addr, File: file})
	}
	return out
}

// configuredAddress finds a collector's address in the config (for a
// collector that is not a healthy member, in self mode).
func (a *app) configuredAddress(jc *JobConfig, id string) string {
	for _, m := range append(cloneMembers(jc.Collectors.Register), jc.Collectors.Static...) {
		mid := m.ID
		if mid == "" {
			mid = watch.Member{Address: m.Address, Port: m.Port}.HostPort()
		}
		if mid == id {
			return watch.Member{Address: m.Address, Port: m.Port}.HostPort()
		}
	}
	return ""
}

// snapshot returns the last assignment and ring.
func (j *job) snapshot() (*shard.Assignment, shard.Ring) {
	j.stateMu.RLock()
	defer j.stateMu.RUnlock()
	return j.last, j.ring
}

// printSummary prints each job's assignment as a table.
func (a *app) printSummary(w io.Writer) {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	for _, j := range a.jobs {
		asg, _ := j.snapshot()
		if asg == nil {
			fmt.Fprintf(tw, "job %s: no assignment\n", j.cfg.Name)
			continue
		}
		fmt.Fprintf(tw, "job %s: %d targets on %d collectors (ring %s, replicas %d)\n",
			j.cfg.Name, asg.Targets, len(asg.Members), asg.Ring, asg.Replicas)
		fmt.Fprintln(tw, "  COLLECTOR\tTARGETS\tFILE")
		for _, m := range asg.Members {
			file := "-"
			if j.dir != nil && !a.flags.DryRun && (a.flags.Member == "" || a.flags.Member == m.ID) {
				file, _ = j.dir.Path(m.ID)
			}
			fmt.Fprintf(tw, "  %s\t%d\t%s\n", m.ID, asg.Count(m.ID), file)
		}
	}
	tw.Flush()
}
