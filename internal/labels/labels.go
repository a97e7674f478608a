// Package labels is the module's one check of label names and values: what
// Prometheus accepts in a file_sd file, an http_sd answer or a shard key.
package labels

import (
	"fmt"
	"unicode/utf8"

	"github.com/cespare/xxhash/v2"
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
	r, _ := CheckHash(ls)
	return r
}

// CheckHash is Check that also returns an order-independent hash of ls
// (the same for equal sets, whatever their iteration order), in the same
// pass over the labels.
func CheckHash(ls model.LabelSet) (reason string, hash uint64) {
	if len(ls) == 1 { // most targets: a look-up costs a fraction of an iteration's start
		if v, ok := ls[model.AddressLabel]; ok {
			return CheckAddressHash(string(v))
		}
	}
	for n, v := range ls {
		if !ValidName(string(n)) {
			return fmt.Sprintf("label name %q is not valid", n), 0
		}
		if !ValidValue(string(v)) {
			return fmt.Sprintf("label %q value is not valid UTF-8", n), 0
		}
		hash += PairHash(string(n), string(v))
	}
	return "", hash
}

// PairHash is one label's share of CheckHash's hash: a set's hash is the
// sum of its labels'.
func PairHash(name, value string) uint64 {
	return Mix(xxhash.Sum64String(name) ^ (xxhash.Sum64String(value) * 0x9e3779b97f4a7c15))
}

// CheckAddressHash is CheckHash of the set of an address alone, without
// the set.
func CheckAddressHash(addr string) (reason string, hash uint64) {
	if !ValidValue(addr) {
		return fmt.Sprintf("label %q value is not valid UTF-8", model.AddressLabel), 0
	}
	return "", Mix(addressHash ^ (xxhash.Sum64String(addr) * 0x9e3779b97f4a7c15))
}

var addressHash = xxhash.Sum64String(string(model.AddressLabel))

// Mix is splitmix64's finalizer: a bijection with full avalanche.
func Mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ x>>31
}
