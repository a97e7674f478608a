package watch_test

import (
	"os/exec"
	"strings"
	"testing"
)

// Users of watch do not pay for client-go or Prometheus' discovery:
// those live in watch/promsd.
func TestImportsStayNarrow(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, p := range strings.Fields(string(out)) {
		if strings.HasPrefix(p, "k8s.io/") || strings.HasPrefix(p, "github.com/prometheus/prometheus/discovery") ||
			strings.HasPrefix(p, "github.com/prometheus/prometheus/model/relabel") {
			t.Errorf("watch depends on %s", p)
		}
	}
}
