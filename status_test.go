package promshard

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
	"testing/synctest"
)

// The status page lists at most 50 collectors a page however many there
// are, with links to the other pages, each bar with its count; what is out
// of the ring is listed apart; the last reshards are there.
func TestStatusPagePaginates(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := start(t, Job{}, Options{})
		var ids []string
		for i := range 120 {
			ids = append(ids, fmt.Sprintf("c%03d", i))
		}
		h.members(ids...)
		rows := regexp.MustCompile(`<tr class="collector" data-id="(c\d+)" data-count="(\d+)">`)
		total := 0
		for page, want := range map[int]int{1: 50, 2: 50, 3: 20} {
			body := serve(h.s, fmt.Sprintf("/?page=%d", page)).Body.String()
			got := rows.FindAllStringSubmatch(body, -1)
			if len(got) != want || !strings.Contains(body, `<a href="?page=2">2</a>`) && page != 2 {
				t.Fatalf("page %d: %d bars, want %d", page, len(got), want)
			}
			if first := got[0][1]; first != ids[(page-1)*50] {
				t.Fatalf("page %d starts with %s, want %s", page, first, ids[(page-1)*50])
			}
			for _, m := range got {
				var n int
				fmt.Sscan(m[2], &n)
				total += n
			}
		}
		if total != 100 {
			t.Fatalf("the bars add up to %d targets, want 100", total)
		}
		h.members(ids[1:]...)
		body := serve(h.s, "/").Body.String()
		if strings.Contains(body, `data-id="c000"`) || !strings.Contains(body, "<td>members</td>") {
			t.Fatalf("after c000 left: %s", body)
		}
		if rec := serve(h.s, "/"); rec.Header().Get("Content-Type") != "text/html; charset=utf-8" || strings.Contains(rec.Body.String(), "http://") {
			t.Fatalf("content type %q, or an external reference", rec.Header().Get("Content-Type"))
		}
	})
}

func TestPprofOnlyWhenAsked(t *testing.T) {
	for _, on := range []bool{false, true} {
		s, err := New([]Job{{Name: "node", Targets: newProvider(1), Outputs: []Output{&output{}}}}, Options{Pprof: on})
		if err != nil {
			t.Fatal(err)
		}
		if rec := serve(s, "/debug/pprof/heap?debug=1"); (rec.Code == 200) != on {
			t.Fatalf("Pprof %v: /debug/pprof/heap answers %d", on, rec.Code)
		}
	}
}
