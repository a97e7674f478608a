package sdfile

import (
	"fmt"
	"strings"
	"testing"
)

// scalePool is the make scale pool: 1,000 groups of 1,000 targets, three
// group labels.
func scalePool() []byte {
	var b strings.Builder
	b.WriteString("[")
	for g := range 1000 {
		if g > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, `{"labels": {"env": "prod", "team": "t%d", "dc": "dc%d"}, "targets": [`, g%50, g%3)
		for i := range 1000 {
			if i > 0 {
				b.WriteString(",")
			}
			n := g*1000 + i
			fmt.Fprintf(&b, `"10.%d.%d.%d:9100"`, n>>16, n>>8&255, n&255)
		}
		b.WriteString("]}")
	}
	b.WriteString("]")
	return []byte(b.String())
}

// BenchmarkParse reads the make scale pool (1M targets) whole, with Parse
// and with ParseReusing given nothing (a first read) and given the last
// read with one group changed.
func BenchmarkParse(b *testing.B) {
	pool := scalePool()
	b.Run("Parse", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := Parse(pool, JSON); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("ParseReusing/first", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, _, err := ParseReusing(pool, nil, source); err != nil {
				b.Fatal(err)
			}
		}
	})
	_, p, _ := ParseReusing(pool, nil, source)
	changed := []byte(strings.Replace(string(pool), `"10.0.0.0:9100"`, `"10.0.0.0:9101"`, 1))
	b.Run("ParseReusing/one-group-changed", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, _, err := ParseReusing(changed, p, source); err != nil {
				b.Fatal(err)
			}
		}
	})
}
