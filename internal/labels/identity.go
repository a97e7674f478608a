package labels

import (
	"reflect"

	"github.com/prometheus/common/model"
)

// Identity is the address of a label set's map, or 0 for nil. Label sets
// travel shared and read-only, so while one is alive no other has its
// address: the same address is the same set.
func Identity(m model.LabelSet) uintptr { return reflect.ValueOf(m).Pointer() }

// SameSets reports whether a and b hold the same label sets (the same
// maps), in the same order.
func SameSets(a, b []model.LabelSet) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if Identity(a[i]) != Identity(b[i]) {
			return false
		}
	}
	return true
}
