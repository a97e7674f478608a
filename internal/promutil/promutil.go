// Package promutil is the one way promshard's packages register their
// metrics.
package promutil

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Register registers every collector on reg (nothing when reg is nil). An
// error names what: "watch: register metrics for consul "x": …"; one for a
// collector already registered says so, as it usually means a second
// instance with the same name.
func Register(reg prometheus.Registerer, what string, cs ...prometheus.Collector) error {
	if reg == nil {
		return nil
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				return fmt.Errorf("%s: already registered (a second instance with the same name?): %w", what, err)
			}
			return fmt.Errorf("%s: %w", what, err)
		}
	}
	return nil
}
