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
