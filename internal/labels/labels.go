// Package labels is the module's one check of label names and values: what
// Prometheus accepts in a file_sd file, an http_sd answer or a shard key.
package labels

import (
	"fmt"
	"unicode/utf8"

	"github.com/prometheus/common/model"
)

// ValidName reports whether n is a label name that every Prometheus version
// accepts: the legacy rules, [a-zA-Z_][a-zA-Z0-9_]*. A file_sd file with one
// other name is refused whole by a Prometheus that checks them that way.
func ValidName(n string) bool { return model.LegacyValidation.IsValidLabelName(n) }

// ValidValue reports whether v is a label value Prometheus accepts: UTF-8.
func ValidValue(v string) bool { return utf8.ValidString(v) }

// Check returns why Prometheus would refuse ls, or "" when it would not.
func Check(ls model.LabelSet) string {
	for n, v := range ls {
		if !ValidName(string(n)) {
			return fmt.Sprintf("label name %q is not valid", n)
		}
		if !ValidValue(string(v)) {
			return fmt.Sprintf("label %q value is not valid UTF-8", n)
		}
	}
	return ""
}
