package watch

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"strconv"
	"time"

	"github.com/hashicorp/consul/api"
)

// AgentClient is the part of the Consul agent API that registration uses.
// *api.Agent satisfies it.
type AgentClient interface {
	ServiceRegisterOpts(service *api.AgentServiceRegistration, opts api.ServiceRegisterOpts) error
	ServiceDeregisterOpts(serviceID string, q *api.QueryOptions) error
	UpdateTTLOpts(checkID, output, status string, q *api.QueryOptions) error
	ChecksWithFilterOpts(filter string, q *api.QueryOptions) (map[string]*api.AgentCheck, error)
}

// CheckType is the kind of health check a registered collector gets.
type CheckType string

// Check types.
const (
	// CheckHTTP polls an HTTP endpoint (Prometheus' /-/healthy by default).
	CheckHTTP CheckType = "http"
	// CheckTCP opens a TCP connection to the collector's port.
	CheckTCP CheckType = "tcp"
	// CheckTTL passes only while the caller keeps calling [PassTTL].
	CheckTTL CheckType = "ttl"
)

// Defaults of [Check].
const (
	DefaultCheckInterval = 5 * time.Second
	DefaultCheckTimeout  = 2 * time.Second
	DefaultCheckPath     = "/-/healthy"
	DefaultCheckTTL      = 30 * time.Second
)

// Check is a registered collector's health check. Zero values get the
// documented defaults.
type Check struct {
	// Type is the kind of check; empty means [CheckHTTP].
	Type CheckType
	// Path is the HTTP check's path, default [DefaultCheckPath]; Scheme is
	// "http" (default) or "https".
	Path, Scheme string
	// TLSSkipVerify skips certificate checks of an HTTPS check.
	TLSSkipVerify bool
	// Interval between checks (default [DefaultCheckInterval]) and the
	// timeout of one (default [DefaultCheckTimeout]); HTTP and TCP only.
	Interval, Timeout time.Duration
	// TTL of a TTL check, default [DefaultCheckTTL].
	TTL time.Duration
	// DeregisterCriticalAfter, when positive, has Consul remove an instance
	// whose check stayed critical that long.
	DeregisterCriticalAfter time.Duration
}

// Registration describes one collector to register in Consul.
type Registration struct {
	// Service is the Consul service name shared by the collectors. Required.
	Service string
	// ID is the instance's service ID; empty means Service-Address-Port.
	ID string
	// Address and Port of the collector's Prometheus. Required.
	Address string
	Port    int
	// Tags and Meta are stored with the instance.
	Tags []string
	Meta map[string]string
	// Weight, when positive, is stored in Meta under [DefaultWeightMeta].
	Weight uint32
	// Check is the instance's health check.
	Check Check
}

// ServiceID returns the ID the instance is registered under.
func (r Registration) ServiceID() string {
	if r.ID != "" {
		return r.ID
	}
	return fmt.Sprintf("%s-%s-%d", r.Service, r.Address, r.Port)
}

// CheckID returns the ID of the instance's health check, for [PassTTL].
func (r Registration) CheckID() string { return "service:" + r.ServiceID() }

// Validate checks the registration and names the first bad field.
func (r Registration) Validate() error {
	switch {
	case r.Service == "":
		return errors.New("watch: Registration.Service is empty")
	case r.Address == "":
		return fmt.Errorf("watch: Registration.Address of %q is empty", r.ServiceID())
	case r.Port <= 0 || r.Port > 65535:
		return fmt.Errorf("watch: Registration.Port %d of %q: want 1-65535", r.Port, r.ServiceID())
	}
	c := r.Check
	switch c.Type {
	case "", CheckHTTP, CheckTCP, CheckTTL:
	default:
		return fmt.Errorf("watch: Registration.Check.Type %q of %q: want http, tcp or ttl", c.Type, r.ServiceID())
	}
	switch c.Scheme {
	case "", "http", "https":
	default:
		return fmt.Errorf("watch: Registration.Check.Scheme %q of %q: want http or https", c.Scheme, r.ServiceID())
	}
	for name, d := range map[string]time.Duration{"Interval": c.Interval, "Timeout": c.Timeout, "TTL": c.TTL,
		"DeregisterCriticalAfter": c.DeregisterCriticalAfter} {
		if d < 0 {
			return fmt.Errorf("watch: Registration.Check.%s %v of %q: must not be negative", name, d, r.ServiceID())
		}
	}
	return nil
}

// agentRegistration builds the Consul registration.
func (r Registration) agentRegistration() *api.AgentServiceRegistration {
	meta := maps.Clone(r.Meta)
	if r.Weight > 0 {
		if meta == nil {
			meta = map[string]string{}
		}
		meta[DefaultWeightMeta] = strconv.FormatUint(uint64(r.Weight), 10)
	}
	c := r.Check
	chk := &api.AgentServiceCheck{CheckID: r.CheckID(), Name: r.Service + " health"}
	if c.DeregisterCriticalAfter > 0 {
		chk.DeregisterCriticalServiceAfter = c.DeregisterCriticalAfter.String()
	}
	interval, timeout := cmp.Or(c.Interval, DefaultCheckInterval), cmp.Or(c.Timeout, DefaultCheckTimeout)
	switch c.Type {
	case CheckTTL:
		chk.TTL = cmp.Or(c.TTL, DefaultCheckTTL).String()
	case CheckTCP:
		chk.TCP = r.HostPort()
		chk.Interval, chk.Timeout = interval.String(), timeout.String()
	default:
		path := c.Path
		if path == "" {
			path = DefaultCheckPath
		}
		scheme := c.Scheme
		if scheme == "" {
			scheme = "http"
		}
		chk.HTTP = (&url.URL{Scheme: scheme, Host: r.HostPort(), Path: path}).String()
		chk.Method = "GET"
		chk.TLSSkipVerify = c.TLSSkipVerify
		chk.Interval, chk.Timeout = interval.String(), timeout.String()
	}
	return &api.AgentServiceRegistration{
		ID: r.ServiceID(), Name: r.Service, Address: r.Address, Port: r.Port,
		Tags: r.Tags, Meta: meta, Check: chk,
	}
}

// HostPort returns the collector's address and port as host:port.
func (r Registration) HostPort() string {
	return Member{Address: r.Address, Port: r.Port}.HostPort()
}

// Register registers a collector with its health check on the Consul agent.
// Registering the same instance again replaces it (checks included): it is
// idempotent.
func Register(ctx context.Context, agent AgentClient, r Registration) error {
	if err := r.Validate(); err != nil {
		return err
	}
	opts := api.ServiceRegisterOpts{ReplaceExistingChecks: true}.WithContext(ctx)
	if err := agent.ServiceRegisterOpts(r.agentRegistration(), opts); err != nil {
		return fmt.Errorf("watch: register %q in consul: %w", r.ServiceID(), err)
	}
	return nil
}

// Deregister removes the instance with the given service ID from the agent.
func Deregister(ctx context.Context, agent AgentClient, serviceID string) error {
	if err := agent.ServiceDeregisterOpts(serviceID, (&api.QueryOptions{}).WithContext(ctx)); err != nil {
		return fmt.Errorf("watch: deregister %q from consul: %w", serviceID, err)
	}
	return nil
}

// PassTTL marks a TTL check as passing for another TTL. checkID is
// [Registration.CheckID]; note is stored as the check's output.
func PassTTL(ctx context.Context, agent AgentClient, checkID, note string) error {
	if err := agent.UpdateTTLOpts(checkID, note, api.HealthPassing, (&api.QueryOptions{}).WithContext(ctx)); err != nil {
		return fmt.Errorf("watch: pass TTL check %q: %w", checkID, err)
	}
	return nil
}
