package elect_test

import (
	"testing"

	"github.com/hashicorp/consul/api"

	"github.com/promshard/promshard/internal/testenv"
)

// startAgent starts a real Consul agent and a client of it.
func startAgent(t *testing.T) (*testenv.Consul, *api.Client) {
	t.Helper()
	agent := testenv.StartConsul(t)
	client, err := api.NewClient(&api.Config{Address: agent.Addr})
	if err != nil {
		t.Fatal(err)
	}
	return agent, client
}
