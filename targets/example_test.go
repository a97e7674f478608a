package targets_test

import (
	"context"
	"fmt"
	"log"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery/targetgroup"

	"github.com/promshard/promshard/targets"
)

// cmdb is a custom provider: whatever a CMDB or service tree says the
// hosts of a service are.
type cmdb struct{ service string }

func (c cmdb) Targets(ctx context.Context) ([]*targetgroup.Group, error) {
	hosts := []string{"10.0.0.1", "10.0.0.2"} // a real one asks the CMDB, with ctx
	g := &targetgroup.Group{Source: "cmdb/" + c.service, Labels: model.LabelSet{"service": model.LabelValue(c.service)}}
	for _, h := range hosts {
		g.Targets = append(g.Targets, model.LabelSet{model.AddressLabel: model.LabelValue(h + ":9100")})
	}
	return []*targetgroup.Group{g}, nil
}

// Register a custom provider under a job name and fetch its targets; an
// unknown job name is an error that lists the jobs there are.
func ExampleRegistry() {
	reg, err := targets.NewRegistry(targets.RegistryOptions{})
	if err != nil {
		log.Fatal(err)
	}
	if err := reg.Register("node", cmdb{service: "web"}, targets.JobOptions{}); err != nil {
		log.Fatal(err)
	}
	res, err := reg.Targets(context.Background(), "node")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(res.Targets(), "targets from", res.Groups[0].Source)

	_, err = reg.Targets(context.Background(), "mysql")
	fmt.Println(err)
	// Output:
	// 2 targets from cmdb/web
	// targets: unknown job "mysql" (registered: node)
}
