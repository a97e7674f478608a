package labels

import (
	"testing"

	"github.com/cespare/xxhash/v2"
	"github.com/prometheus/common/model"
)

func TestCheck(t *testing.T) {
	for _, tc := range []struct {
		ls   model.LabelSet
		want string
	}{
		{model.LabelSet{"env": "prod", "__meta_x": ""}, ""},
		{model.LabelSet{"0bad": "x"}, `label name "0bad" is not valid`},
		{model.LabelSet{"a-b": "x"}, `label name "a-b" is not valid`},
		{model.LabelSet{"a": "\xff"}, `label "a" value is not valid UTF-8`},
	} {
		if got := Check(tc.ls); got != tc.want {
			t.Errorf("Check(%v) = %q, want %q", tc.ls, got, tc.want)
		}
	}
	if ValidName("") || !ValidName("_x1") || ValidValue("\xff") || !ValidValue("é") {
		t.Fatal("ValidName/ValidValue")
	}
}

// A set of __address__ alone takes a short way: the same hash and the same
// verdict as the general one.
func TestCheckHashAddressOnly(t *testing.T) {
	general := func(ls model.LabelSet) (string, uint64) {
		var h uint64
		for n, v := range ls {
			if !ValidValue(string(v)) {
				return `label "` + string(n) + `" value is not valid UTF-8`, 0
			}
			h += Mix(xxhash.Sum64String(string(n)) ^ (xxhash.Sum64String(string(v)) * 0x9e3779b97f4a7c15))
		}
		return "", h
	}
	for _, v := range []model.LabelValue{"10.0.0.1:9100", "", "é:1", "\xff:1"} {
		ls := model.LabelSet{model.AddressLabel: v}
		wr, wh := general(ls)
		if r, h := CheckHash(ls); r != wr || h != wh {
			t.Errorf("%q: %q %x, want %q %x", v, r, h, wr, wh)
		}
		two := model.LabelSet{model.AddressLabel: v, "env": "x"}
		_, h1 := CheckHash(ls)
		_, h2 := CheckHash(two)
		if wr == "" && h1 == h2 {
			t.Errorf("%q: a second label does not change the hash", v)
		}
	}
}
