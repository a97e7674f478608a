package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/promshard/promshard/filesd"
	"github.com/promshard/promshard/watch"
)

// checkConfig is the check config command: it builds everything a run
// would build, touching neither Consul nor a collector, checks that each
// output directory can be written and names a file for every collector
// the config lists, and prints what would run. Exit 0 or 2.
func checkConfig(f Flags, stdout, stderr io.Writer, _ *slog.Logger) int {
	f.DryRun = true // nothing that registers, elects or audits is built
	a, err := load(f, slog.New(slog.DiscardHandler))
	if err == nil {
		err = a.checkOutputs()
	}
	if err != nil {
		fmt.Fprintf(stderr, "prome-shard: %s: %v\n", f.Config, err)
		fmt.Fprintf(stdout, "FAILED: %s\n", f.Config)
		return exitConfig
	}
	fmt.Fprintf(stdout, "SUCCESS: %s is valid\n", f.Config)
	a.describe(stdout)
	return exitOK
}

// checkOutputs checks each job's output directory (it is a directory that
// can be written, or can be made) and its file name for every collector
// the config lists.
func (a *app) checkOutputs() error {
	for i, jc := range a.cfg.Jobs {
		o := jc.Output
		if o.Dir == "" {
			continue
		}
		at := fmt.Sprintf("jobs[%d] (%s).output", i, jc.Name)
		if err := writable(o.Dir); err != nil {
			return fmt.Errorf("%s.dir: %w", at, err)
		}
		d, err := filesd.NewDir(filesd.DirOptions{Dir: o.Dir, Template: o.File, Format: filesd.Format(o.Format)})
		if err != nil {
			return fmt.Errorf("%s: %w", at, err)
		}
		for _, m := range append(registered(&jc), static(&jc)...) {
			if err := d.CheckMember(m.ID); err != nil {
				return fmt.Errorf("%s.file: collector %q: %w", at, m.ID, err)
			}
		}
	}
	return nil
}

// writable reports whether files can be written in dir, or in the
// nearest directory above it that exists (a run makes the rest).
func writable(dir string) error {
	for p := filepath.Clean(dir); ; p = filepath.Dir(p) {
		st, err := os.Stat(p)
		switch {
		case errors.Is(err, fs.ErrNotExist) && p != filepath.Dir(p):
			continue
		case err != nil:
			return fmt.Errorf("%q: %w", dir, err)
		case !st.IsDir():
			return fmt.Errorf("%q: %s is not a directory", dir, p)
		}
		if err := syscall.Access(p, 2 /* W_OK */); err != nil {
			return fmt.Errorf("%q: %s cannot be written: %w", dir, p, err)
		}
		return nil
	}
}

// describe prints what a run of the config would do.
func (a *app) describe(w io.Writer) {
	c := a.cfg
	mode := "central mode: one copy writes every collector's output"
	if c.lock.Key != "" {
		mode += fmt.Sprintf(", several copies elect a leader under Consul key %q", c.lock.Key)
	}
	fmt.Fprintf(w, "%s (--member ID for self mode)\n", mode)
	fmt.Fprintf(w, "consul: %s; refresh every %v; listen %s\n", cmp.Or(c.Consul.Address, "the local agent (127.0.0.1:8500)"),
		cmp.Or(c.RefreshInterval.Text(), "1m"), cmp.Or(c.Listen, "off"))
	for _, jc := range c.Jobs {
		fmt.Fprintf(w, "job %s: %d replica(s)", jc.Name, max(jc.Replicas, 1))
		if jc.SpreadBy != "" {
			fmt.Fprintf(w, " spread by %s", jc.SpreadBy)
		}
		cc := jc.Collectors
		if len(cc.Static) > 0 {
			fmt.Fprintf(w, "; collectors: %d static (%s)", len(cc.Static), ids(cc.Static))
		} else {
			fmt.Fprintf(w, "; collectors: Consul service %q", cc.ConsulService)
			if len(cc.Register) > 0 {
				fmt.Fprintf(w, ", registering %d (%s)", len(cc.Register), ids(cc.Register))
			}
		}
		t := jc.Targets
		switch {
		case len(t.Static) > 0:
			fmt.Fprintf(w, "; targets: %d static group(s)", len(t.Static))
		case len(t.FileSD) > 0:
			fmt.Fprintf(w, "; targets: file_sd %s", strings.Join(t.FileSD, ", "))
		case t.HTTPSD != nil:
			fmt.Fprintf(w, "; targets: http_sd %s", t.HTTPSD.URL)
		default:
			fmt.Fprintf(w, "; targets: Prometheus SD")
		}
		if jc.Output.Dir != "" {
			fmt.Fprintf(w, "; output: %s", filepath.Join(jc.Output.Dir, cmp.Or(jc.Output.File, filesd.DefaultTemplate)))
		}
		if jc.Output.HTTPSD {
			fmt.Fprintf(w, "; http_sd at /sd/%s/ID", jc.Name)
		}
		fmt.Fprintf(w, "; reload: %s\n", cmp.Or(jc.Reload.Method, "none"))
	}
}

func ids(ms []watch.Member) string {
	var out []string
	for _, m := range ms {
		out = append(out, cmp.Or(m.ID, m.HostPort()))
	}
	return strings.Join(out, ", ")
}

// deregister is the deregister command: it takes every collector the
// config registers out of Consul.
func (a *app) deregister(ctx context.Context, w io.Writer) error {
	if a.registrar == nil {
		fmt.Fprintln(w, "nothing to deregister: no job lists collectors.register")
		return nil
	}
	if err := a.registrar.Remove(ctx); err != nil {
		return err
	}
	n := 0
	for _, jc := range a.cfg.Jobs {
		n += len(jc.Collectors.Register)
	}
	fmt.Fprintf(w, "deregistered %d collector(s) from Consul\n", n)
	return nil
}
