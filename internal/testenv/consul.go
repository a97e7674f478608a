package testenv

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// Consul is a `consul agent -dev` on loopback.
type Consul struct {
	t    testing.TB
	bin  string
	hcl  string
	Addr string // host:port of the HTTP API

	mu  sync.Mutex
	cmd *exec.Cmd
}

// StartConsul starts a dev agent on free loopback ports, waits until it has
// a leader, and stops it when the test ends.
func StartConsul(t testing.TB) *Consul {
	t.Helper()
	return StartConsulWith(t, "")
}

// StartConsulWith is StartConsul with more agent configuration in HCL
// (ACLs, say).
func StartConsulWith(t testing.TB, hcl string) *Consul {
	t.Helper()
	bin := RequireBinary(t, "consul", "PROMSHARD_CONSUL")
	http := FreePort(t)
	c := &Consul{
		t:    t,
		bin:  bin,
		Addr: fmt.Sprintf("127.0.0.1:%d", http),
		hcl: fmt.Sprintf(`ports { http = %d, dns = -1, grpc = -1, grpc_tls = -1, serf_lan = %d, serf_wan = %d, server = %d }`,
			http, FreePort(t), FreePort(t), FreePort(t)) + "\n" + hcl,
	}
	c.Start()
	t.Cleanup(c.Stop)
	return c
}

// Start (re)starts the agent on the same ports and waits for a leader.
// A restarted dev agent starts empty.
func (c *Consul) Start() {
	c.t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cmd != nil {
		return
	}
	cmd := exec.Command(c.bin, "agent", "-dev", "-bind", "127.0.0.1", "-client", "127.0.0.1",
		"-node", "promshard-test", "-log-level", "warn", "-hcl", c.hcl)
	cmd.Stdout = logWriter{c.t, "consul"}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		c.t.Fatalf("start consul: %v", err)
	}
	c.cmd = cmd
	err := WaitFor(30*time.Second, 100*time.Millisecond, func() error {
		_, b, err := HTTPGet(context.Background(), "http://"+c.Addr+"/v1/status/leader")
		if err != nil {
			return err
		}
		if s := strings.Trim(strings.TrimSpace(string(b)), `"`); s == "" {
			return fmt.Errorf("no leader yet")
		}
		return nil
	})
	if err != nil {
		c.t.Fatalf("consul on %s did not elect a leader: %v", c.Addr, err)
	}
}

// Stop kills the agent and waits for it to exit.
func (c *Consul) Stop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cmd == nil {
		return
	}
	_ = c.cmd.Process.Kill()
	_ = c.cmd.Wait()
	c.cmd = nil
}
