package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/promshard/promshard/internal/testenv"
)

// serveOn answers until ctx ends, then returns nil.
func TestServeOn(t *testing.T) {
	addr, stop := serveHi(t, "")
	err := testenv.WaitFor(5*time.Second, 10*time.Millisecond, func() error {
		code, b, err := testenv.HTTPGet(context.Background(), "http://"+addr+"/")
		if err != nil || code != 200 || string(b) != "hi" {
			return fmt.Errorf("%d %q %v", code, b, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := stop(); err != nil {
		t.Fatalf("after ctx ended: %v", err)
	}
}

// With a --web.config.file asking for TLS and basic auth, a plain HTTP
// request and a wrong password are refused and the right one is served,
// to a real TLS client that trusts only the test's CA.
func TestServeOnWithTLSAndBasicAuth(t *testing.T) {
	dir := t.TempDir()
	pool := selfSigned(t, dir)
	hash, err := bcrypt.GenerateFromPassword([]byte("right"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	webConfig := filepath.Join(dir, "web.yml")
	os.WriteFile(webConfig, fmt.Appendf(nil, "tls_server_config:\n  cert_file: %s\n  key_file: %s\nbasic_auth_users:\n  ops: %s\n",
		filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"), hash), 0o600)
	if err := checkWebConfig(webConfig); err != nil {
		t.Fatal(err)
	}
	addr, stop := serveHi(t, webConfig)
	defer stop()
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	get := func(url, user, password string) (int, error) {
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		if user != "" {
			req.SetBasicAuth(user, password)
		}
		resp, err := client.Do(req)
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	err = testenv.WaitFor(5*time.Second, 10*time.Millisecond, func() error {
		if code, err := get("https://"+addr+"/", "ops", "right"); err != nil || code != 200 {
			return fmt.Errorf("the right password over TLS: %d %v", code, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if code, err := get("https://"+addr+"/", "ops", "wrong"); err != nil || code != http.StatusUnauthorized {
		t.Fatalf("a wrong password: %d %v, want 401", code, err)
	}
	if code, err := get("https://"+addr+"/", "", ""); err != nil || code != http.StatusUnauthorized {
		t.Fatalf("no password: %d %v, want 401", code, err)
	}
	if code, _, err := testenv.HTTPGet(context.Background(), "http://"+addr+"/"); err == nil && code == 200 {
		t.Fatal("a plain HTTP request was served")
	}
	// A web config that cannot be read is a config mistake at start.
	os.WriteFile(webConfig, []byte("tls_server_config: {cert_file: /nonexistent}\n"), 0o600)
	if err := checkWebConfig(webConfig); err == nil {
		t.Fatal("a web config naming a missing certificate was accepted")
	}
}

// serveHi serves "hi" with serveOn on a loopback port; stop ends it and
// returns serveOn's result.
func serveHi(t *testing.T, webConfig string) (addr string, stop func() error) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- serveOn(ctx, l, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, "hi") }),
			webConfig, slog.New(slog.DiscardHandler))
	}()
	var once bool
	var res error
	return l.Addr().String(), func() error {
		if !once {
			once = true
			cancel()
			res = <-done
		}
		return res
	}
}

// selfSigned writes cert.pem and key.pem for 127.0.0.1 into dir and returns
// a pool that trusts the certificate.
func selfSigned(t *testing.T, dir string) *x509.CertPool {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "prome-shard test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "cert.pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(filepath.Join(dir, "key.pem"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return pool
}
