package labels

import (
	"testing"

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
