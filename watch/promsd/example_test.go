package promsd_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	_ "github.com/prometheus/prometheus/discovery/file"
	"github.com/prometheus/prometheus/model/relabel"
	"go.yaml.in/yaml/v2"

	"github.com/promshard/promshard/watch"
	"github.com/promshard/promshard/watch/promsd"
)

// A fleet defined in one file_sd file: each target a collector, its id
// label relabelled into the member ID.
func Example() {
	dir, _ := os.MkdirTemp("", "fleet")
	defer os.RemoveAll(dir)
	fleet := filepath.Join(dir, "collectors.yml")
	os.WriteFile(fleet, []byte(`- targets: ["10.0.0.1:9090"]
  labels: {id: collector-1, zone: a}
- targets: ["10.0.0.2:9090"]
  labels: {id: collector-2, zone: b}
`), 0o644)
	cfgs, err := promsd.ParseConfigs([]byte("file_sd_configs: [{files: [" + fleet + "]}]"))
	if err != nil {
		fmt.Println(err)
		return
	}
	var rules []*relabel.Config
	yaml.UnmarshalStrict([]byte("[{source_labels: [id], target_label: __promshard_id__}]"), &rules)
	src, err := promsd.New(promsd.Options{Name: "fleet", Configs: cfgs, Relabel: rules})
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out := make(chan []watch.Member, 1)
	go src.Run(ctx, out)
	for _, m := range <-out {
		fmt.Println(m.ID, m.HostPort(), m.Meta["zone"])
	}
	// Output:
	// collector-1 10.0.0.1:9090 a
	// collector-2 10.0.0.2:9090 b
}
