package watch

import (
	"fmt"
	"time"

	"github.com/hashicorp/consul/api"
)

// NewConsulClient builds a Consul client from cfg, or from the standard
// CONSUL_* environment variables (CONSUL_HTTP_ADDR, CONSUL_HTTP_TOKEN,
// CONSUL_CACERT, …) when cfg is nil. Its HTTP timeout exceeds maxWait plus
// the 1/16 jitter Consul adds to a blocking query, so no blocking query is
// cut short; maxWait 0 means [DefaultWaitTime]. A cfg.HttpClient that is set
// is used as it is.
func NewConsulClient(cfg *api.Config, maxWait time.Duration) (*api.Client, error) {
	if cfg == nil {
		cfg = api.DefaultConfig()
	}
	if maxWait <= 0 {
		maxWait = DefaultWaitTime
	}
	if cfg.HttpClient == nil {
		if cfg.Transport == nil {
			cfg.Transport = api.DefaultConfig().Transport
		}
		hc, err := api.NewHttpClient(cfg.Transport, cfg.TLSConfig)
		if err != nil {
			return nil, fmt.Errorf("watch: consul HTTP client for %s: %w", cfg.Address, err)
		}
		hc.Timeout = maxWait + maxWait/16 + 15*time.Second
		cfg.HttpClient = hc
	}
	c, err := api.NewClient(cfg)
	if err != nil {
		return nil, fmt.Errorf("watch: consul client for %s: %w", cfg.Address, err)
	}
	return c, nil
}

// ClientConfig is how to reach Consul, as a config file gives it. Empty
// fields take the standard CONSUL_* environment variables, then Consul's
// defaults (127.0.0.1:8500).
type ClientConfig struct {
	Address    string    `yaml:"address"`
	Scheme     string    `yaml:"scheme"` // http or https
	Token      string    `yaml:"token"`
	TokenFile  string    `yaml:"token_file"`
	Datacenter string    `yaml:"datacenter"`
	TLS        ClientTLS `yaml:"tls"`
}

// ClientTLS is the TLS setup of a Consul connection.
type ClientTLS struct {
	CAFile             string `yaml:"ca_file"`
	CertFile           string `yaml:"cert_file"`
	KeyFile            string `yaml:"key_file"`
	ServerName         string `yaml:"server_name"`
	InsecureSkipVerify bool   `yaml:"insecure_skip_verify"`
}

// APIConfig returns the consul/api config for [NewConsulClient]: the
// environment's, overridden by every field that is set. A Scheme other than
// "", http or https is an error.
func (c ClientConfig) APIConfig() (*api.Config, error) {
	if c.Scheme != "" && c.Scheme != "http" && c.Scheme != "https" {
		return nil, fmt.Errorf("watch: ClientConfig.Scheme %q: want http or https", c.Scheme)
	}
	ac := api.DefaultConfig()
	for dst, v := range map[*string]string{&ac.Address: c.Address, &ac.Scheme: c.Scheme, &ac.Token: c.Token,
		&ac.TokenFile: c.TokenFile, &ac.Datacenter: c.Datacenter, &ac.TLSConfig.CAFile: c.TLS.CAFile,
		&ac.TLSConfig.CertFile: c.TLS.CertFile, &ac.TLSConfig.KeyFile: c.TLS.KeyFile, &ac.TLSConfig.Address: c.TLS.ServerName} {
		if v != "" {
			*dst = v
		}
	}
	ac.TLSConfig.InsecureSkipVerify = ac.TLSConfig.InsecureSkipVerify || c.TLS.InsecureSkipVerify
	return ac, nil
}
