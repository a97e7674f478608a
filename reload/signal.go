package reload

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// SignalOptions configures a [Signal] reloader.
type SignalOptions struct {
	// PID is the process to signal, or PIDFile a file holding its pid
	// (read at every reload, so a restarted Prometheus is found). Exactly
	// one must be set.
	PID     int
	PIDFile string
	// Signal to send; nil means SIGHUP, which makes Prometheus reload.
	Signal os.Signal
}

// Signal reloads a local Prometheus by sending it a signal. It suits a
// promshard that runs beside its one collector (self mode); the collector
// passed to Reload is used only in errors.
type Signal struct {
	opts SignalOptions
}

var _ Reloader = (*Signal)(nil)

// NewSignal validates opts. It does no I/O.
func NewSignal(opts SignalOptions) (*Signal, error) {
	if (opts.PID > 0) == (opts.PIDFile != "") {
		return nil, fmt.Errorf("reload: SignalOptions: set exactly one of PID (%d) and PIDFile (%q)", opts.PID, opts.PIDFile)
	}
	if opts.PID < 0 {
		return nil, fmt.Errorf("reload: SignalOptions.PID %d: must be positive", opts.PID)
	}
	if opts.Signal == nil {
		opts.Signal = syscall.SIGHUP
	}
	return &Signal{opts: opts}, nil
}

// Reload sends the signal.
func (s *Signal) Reload(ctx context.Context, c Collector) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	pid := s.opts.PID
	if s.opts.PIDFile != "" {
		b, err := os.ReadFile(s.opts.PIDFile)
		if err != nil {
			return fmt.Errorf("reload collector %q: read pid file: %w", c.ID, err)
		}
		pid, err = strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || pid <= 0 {
			return fmt.Errorf("reload collector %q: pid file %s holds %q, not a pid", c.ID, s.opts.PIDFile, strings.TrimSpace(string(b)))
		}
	}
	p, err := os.FindProcess(pid)
	if err == nil {
		err = p.Signal(s.opts.Signal)
	}
	if err != nil {
		if errors.Is(err, os.ErrProcessDone) {
			err = fmt.Errorf("process %d is not running", pid)
		}
		return fmt.Errorf("reload collector %q: send %v to %d: %w", c.ID, s.opts.Signal, pid, err)
	}
	return nil
}
