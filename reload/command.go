package reload

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"text/template"
	"time"
)

// DefaultCommandTimeout bounds one run of a [Command].
const DefaultCommandTimeout = 2 * time.Minute

// CommandOptions configures a [Command] reloader.
type CommandOptions struct {
	// Args is the command and its arguments, each a text/template over the
	// [Collector] ({{.ID}}, {{.Address}}, {{.File}}). Required. The command
	// runs directly, not through a shell; use "sh", "-c", "…" for one.
	Args []string
	// Env is added to the environment of the command.
	Env []string
	// Timeout bounds one run; default [DefaultCommandTimeout].
	Timeout time.Duration
}

// Command reloads a collector by running a user command, such as an scp,
// rsync or ansible call that copies the file and then reloads. A non-zero
// exit is an error that carries the command's output.
type Command struct {
	opts CommandOptions
	args []*template.Template
}

var _ Reloader = (*Command)(nil)

// NewCommand validates opts and parses the argument templates.
func NewCommand(opts CommandOptions) (*Command, error) {
	if len(opts.Args) == 0 || opts.Args[0] == "" {
		return nil, errors.New("reload: CommandOptions.Args is empty")
	}
	if opts.Timeout < 0 {
		return nil, fmt.Errorf("reload: CommandOptions.Timeout %v: must not be negative", opts.Timeout)
	}
	if opts.Timeout == 0 {
		opts.Timeout = DefaultCommandTimeout
	}
	c := &Command{opts: opts}
	for i, a := range opts.Args {
		t, err := template.New("arg").Option("missingkey=error").Parse(a)
		if err != nil {
			return nil, fmt.Errorf("reload: CommandOptions.Args[%d] %q: %w", i, a, err)
		}
		if err := t.Execute(&bytes.Buffer{}, Collector{}); err != nil {
			return nil, fmt.Errorf("reload: CommandOptions.Args[%d] %q: %w", i, a, err)
		}
		c.args = append(c.args, t)
	}
	return c, nil
}

// Reload runs the command for the collector.
func (c *Command) Reload(ctx context.Context, col Collector) error {
	args := make([]string, len(c.args))
	for i, t := range c.args {
		var b strings.Builder
		if err := t.Execute(&b, col); err != nil {
			return fmt.Errorf("reload collector %q: argument %d: %w", col.ID, i, err)
		}
		args[i] = b.String()
	}
	ctx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Env = append(os.Environ(), c.opts.Env...)
	// The command runs in a process group of its own, and a timeout or
	// cancellation kills the whole group: an "sh -c 'rsync …'" leaves no
	// rsync running behind it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	// A command may leave a child behind that holds its output open (an
	// "sh -c 'x &'", ssh's ControlPersist): once the command itself has
	// exited, its output is read for at most a second more, then closed.
	// The exit status decides.
	cmd.WaitDelay = time.Second
	out := &tail{max: maxOutput}
	cmd.Stdout, cmd.Stderr = out, out
	err := cmd.Run()
	if err == nil || errors.Is(err, exec.ErrWaitDelay) && cmd.ProcessState != nil && cmd.ProcessState.Success() {
		return nil
	}
	if ctx.Err() == context.DeadlineExceeded {
		err = fmt.Errorf("timed out after %v: %w", c.opts.Timeout, err)
	}
	msg := strings.TrimSpace(out.String())
	if len(msg) > 2048 || out.cut {
		msg = "…" + msg[max(0, len(msg)-2048):]
	}
	return fmt.Errorf("reload collector %q: %s: %w; output: %s", col.ID, args[0], err, msg)
}

// maxOutput bounds the output of a reload command kept for its error.
const maxOutput = 64 << 10

// tail keeps the last max bytes written to it.
type tail struct {
	mu  sync.Mutex
	b   []byte
	max int
	cut bool // bytes were dropped
}

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if over := len(t.b) - t.max; over > 0 {
		t.b, t.cut = append(t.b[:0], t.b[over:]...), true
	}
	return len(p), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}
