package filesd_test

import (
	"fmt"
	"log"
	"os"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery/targetgroup"

	"github.com/promshard/promshard/filesd"
)

// Keep one file_sd file per collector in a directory. The second Sync
// changes nothing, so nothing is written and no reload is needed; a
// collector that leaves loses its file.
func ExampleDir() {
	dir, _ := os.MkdirTemp("", "sd")
	defer os.RemoveAll(dir)
	d, err := filesd.NewDir(filesd.DirOptions{Dir: dir, Template: "shard-{{.ID}}.json"})
	if err != nil {
		log.Fatal(err)
	}
	web := &targetgroup.Group{Source: "web", Labels: model.LabelSet{"job": "web"},
		Targets: []model.LabelSet{{model.AddressLabel: "10.0.0.1:9100"}}}
	assignment := map[string][]*targetgroup.Group{"a": {web}, "b": {}}

	res, _ := d.Sync(assignment)
	fmt.Println("written:", res.Written)
	res, _ = d.Sync(assignment)
	fmt.Println("unchanged:", res.Unchanged)
	res, _ = d.Sync(map[string][]*targetgroup.Group{"a": {web}})
	fmt.Println("removed:", res.Removed)

	b, _ := os.ReadFile(dir + "/shard-a.json")
	fmt.Print(string(b))
	// Output:
	// written: [a b]
	// unchanged: [a b]
	// removed: [b]
	// [
	//   {
	//     "targets": [
	//       "10.0.0.1:9100"
	//     ],
	//     "labels": {
	//       "job": "web"
	//     }
	//   }
	// ]
}

// Marshal renders groups as file_sd YAML; a target with labels of its own
// gets an entry of its own.
func ExampleMarshal() {
	g := &targetgroup.Group{Labels: model.LabelSet{"env": "prod"}, Targets: []model.LabelSet{
		{model.AddressLabel: "10.0.0.1:9100"},
		{model.AddressLabel: "10.0.0.2:9100", "rack": "r1"},
	}}
	b, err := filesd.Marshal([]*targetgroup.Group{g}, filesd.YAML)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Print(string(b))
	// Output:
	// - targets:
	//   - "10.0.0.1:9100"
	//   labels:
	//     "env": "prod"
	// - targets:
	//   - "10.0.0.2:9100"
	//   labels:
	//     "env": "prod"
	//     "rack": "r1"
}
