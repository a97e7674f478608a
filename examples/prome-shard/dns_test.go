package main

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/promshard/promshard/internal/testenv"
)

// srvZone is an in-process DNS server on a loopback address, port 53:
// SRV records of _prometheus._tcp.collectors.test. name the collectors,
// each cN.collectors.test. with an A record of 127.0.0.1.
type srvZone struct {
	addr string
	mu   sync.Mutex
	srv  map[string]uint16 // collector → port
}

const srvName = "_prometheus._tcp.collectors.test."

func startSRVZone(t *testing.T) *srvZone {
	t.Helper()
	z := &srvZone{srv: map[string]uint16{}}
	ip := fmt.Sprintf("127.53.%d.%d", 1+rand.IntN(250), 1+rand.IntN(250))
	pc, err := net.ListenPacket("udp", ip+":53")
	if err != nil {
		need(t, "a DNS server on port 53 of a loopback address (root)", err)
	}
	z.addr = ip
	s := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(z.serve)}
	go s.ActivateAndServe()
	t.Cleanup(func() { s.Shutdown() })
	return z
}

func (z *srvZone) set(id string, port int) {
	z.mu.Lock()
	defer z.mu.Unlock()
	if port == 0 {
		delete(z.srv, id)
	} else {
		z.srv[id] = uint16(port)
	}
}

func (z *srvZone) serve(w dns.ResponseWriter, r *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(r)
	m.Authoritative = true
	z.mu.Lock()
	defer z.mu.Unlock()
	for _, q := range r.Question {
		name := strings.ToLower(q.Name)
		hdr := dns.RR_Header{Name: q.Name, Rrtype: q.Qtype, Class: dns.ClassINET, Ttl: 1}
		switch {
		case name == srvName && q.Qtype == dns.TypeSRV:
			for id, port := range z.srv {
				m.Answer = append(m.Answer, &dns.SRV{Hdr: hdr, Priority: 0, Weight: 10, Port: port, Target: id + ".collectors.test."})
			}
		case strings.HasSuffix(name, ".collectors.test.") && q.Qtype == dns.TypeA:
			m.Answer = append(m.Answer, &dns.A{Hdr: hdr, A: net.IPv4(127, 0, 0, 1)})
		case strings.HasSuffix(name, ".collectors.test."): // AAAA and others: no such record
		default:
			m.Rcode = dns.RcodeNameError
		}
	}
	w.WriteMsg(m)
}

// inZone returns a command prefix that runs a program with /etc/resolv.conf
// naming only the zone's server, in a mount namespace of its own (the
// rest of the machine keeps its resolver).
func (z *srvZone) inZone(t *testing.T) []string {
	t.Helper()
	conf := filepath.Join(t.TempDir(), "resolv.conf")
	if err := os.WriteFile(conf, []byte("nameserver "+z.addr+"\noptions timeout:1 attempts:2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	prefix := []string{"unshare", "-m", "sh", "-c", `mount --bind "$0" /etc/resolv.conf && exec "$@"`, conf}
	if out, err := exec.Command(prefix[0], append(prefix[1:], "true")...).CombinedOutput(); err != nil {
		need(t, "unshare -m and mount (root)", fmt.Errorf("%v: %s", err, out))
	}
	return prefix
}

// need skips, or in CI fails, a test that cannot run here.
func need(t *testing.T, what string, err error) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("CI needs %s: %v", what, err)
	}
	t.Skipf("needs %s: %v", what, err)
}

// Collectors found by dns_sd_configs (SRV), end to end: three real
// Prometheus collectors named by SRV records of an in-process DNS server;
// removing one record fails its collector over; adding it back hands its
// targets back with no gap.
func TestDNSSRVCollectors(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test")
	}
	zone := startSRVZone(t)
	prefix := zone.inZone(t)
	out := t.TempDir()
	targets := testenv.ScrapeTargets(t, 30)
	var cs []*collector
	for i := 1; i <= 3; i++ {
		id := fmt.Sprintf("c%d", i)
		cfg := fmt.Sprintf("global: {scrape_interval: 1s, scrape_timeout: 500ms}\nscrape_configs:\n  - job_name: node\n    file_sd_configs: [{files: [%q]}]\n",
			filepath.Join(out, id+".json"))
		c := newCollector(id, testenv.StartPrometheus(t, t.TempDir(), cfg))
		cs = append(cs, c)
		_, port := hostPort(t, c.prom.Addr)
		zone.set(id, port)
	}
	cfg := writeConfig(t, fmt.Sprintf(`settle: 1ms
jobs:
  - name: node
    collectors:
      sd:
        dns_sd_configs: [{names: [%s], type: SRV, refresh_interval: 1s}]
        relabel_configs:
          - {source_labels: [__meta_dns_srv_record_target], regex: '([^.]+)\..*', target_label: __promshard_id__}
        probe: ready
        probe_interval: 1s
    targets: {static: [{targets: [%s]}]}
    output: {dir: %q}
`, strings.TrimSuffix(srvName, "."), strings.Join(targets, ", "), out))
	startBinaryIn(t, prefix, buildBinary(t), "--config.file", cfg, "--web.listen-address", fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)))
	before := waitScraped(t, cs, "node", targets, 1, 60*time.Second, nil)
	if err := testenv.WaitFor(30*time.Second, 250*time.Millisecond, func() error {
		before = waitScraped(t, cs, "node", targets, 1, 30*time.Second, nil)
		for _, c := range cs {
			if !strings.Contains(fmt.Sprint(before), c.id) {
				return fmt.Errorf("%s scrapes nothing yet", c.id)
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	// c2's record goes: its collector is gone, its targets move.
	zone.set("c2", 0)
	removed := time.Now()
	// c2's Prometheus still runs: it must drop its targets (its file is removed).
	var after map[string]string
	if err := testenv.WaitFor(60*time.Second, 250*time.Millisecond, func() error {
		after = waitScraped(t, cs, "node", targets, 1, 60*time.Second, nil)
		for a, id := range after {
			if id == "c2" {
				return fmt.Errorf("%s still scraped by c2", a)
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for a, id := range after {
		if before[a] != "c2" && id != before[a] {
			t.Fatalf("%s moved from %s to %s, though only c2 left", a, before[a], id)
		}
	}
	t.Logf("c2's SRV record removed: every target scraped by c1 or c3 after %v", time.Since(removed).Round(10*time.Millisecond))

	// It comes back: its targets are handed back, never unscraped.
	stop := countUnscraped(cs, "node", targets)
	zone.set("c2", func() int { _, p := hostPort(t, cs[1].prom.Addr); return p }())
	back := time.Now()
	waitScraped(t, cs, "node", targets, 1, 90*time.Second, before)
	if n := stop(); n != 0 {
		t.Fatalf("%d target-samples unscraped while c2 came back", n)
	}
	t.Logf("c2's SRV record back: its targets handed back after %v with 0 unscraped target-samples", time.Since(back).Round(10*time.Millisecond))
}
