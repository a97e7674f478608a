package web_test

import (
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery/targetgroup"

	"github.com/promshard/promshard"
	"github.com/promshard/promshard/filesd"
	"github.com/promshard/promshard/targets"
	"github.com/promshard/promshard/web"
)

// A daemon mounts the Sharder's pages and API in its own mux, here under
// /promshard/ (the page's links are relative, so a prefix works).
func ExampleHandler() {
	pool := targets.Static([]*targetgroup.Group{{Targets: []model.LabelSet{{model.AddressLabel: "10.0.0.1:9100"}}}})
	s, err := promshard.New([]promshard.Job{{Name: "node", Targets: pool, Outputs: []promshard.Output{&filesd.Handler{}}}},
		promshard.Options{})
	if err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/promshard/", http.StripPrefix("/promshard", web.Handler(s, web.Options{})))

	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest("GET", "/promshard/-/ready", nil))
	fmt.Print(rec.Code, " ", rec.Body.String())
	// Output: 503 job "node" has not resharded yet
}
