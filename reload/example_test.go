package reload_test

import (
	"context"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/promshard/promshard/reload"
)

// Reload the collectors whose files changed, four at a time; every
// collector's outcome is reported on its own.
func ExamplePool() {
	// Stand-ins for two Prometheus servers: one reloads, one runs without
	// --web.enable-lifecycle.
	ok := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer ok.Close()
	locked := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "Lifecycle API is not enabled.", http.StatusForbidden)
	}))
	defer locked.Close()

	h, err := reload.NewHTTP(reload.HTTPOptions{})
	if err != nil {
		log.Fatal(err)
	}
	pool, err := reload.NewPool(h, reload.PoolOptions{Concurrency: 4})
	if err != nil {
		log.Fatal(err)
	}
	res := pool.Reload(context.Background(), []reload.Collector{
		{ID: "a", Address: strings.TrimPrefix(ok.URL, "http://")},
		{ID: "b", Address: strings.TrimPrefix(locked.URL, "http://")},
	})
	for _, r := range res {
		fmt.Println(r.Collector.ID, r.Err == nil)
	}
	fmt.Println("failed:", res.Failed())
	// Output:
	// a true
	// b false
	// failed: [b]
}
