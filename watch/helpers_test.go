package watch

import (
	"net"
	"net/url"
	"strconv"
	"testing"
)

// memberOf makes a member of a test server's URL.
func memberOf(t testing.TB, u string) Member {
	t.Helper()
	pu, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	host, port, _ := net.SplitHostPort(pu.Host)
	p, _ := strconv.Atoi(port)
	return Member{ID: pu.Host, Address: host, Port: p}
}
