package bouncerapi

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/portsentry-nft/portsentry-nft/internal/decide"
)

// selfSigned writes a certificate for 127.0.0.1 and its key as PEM files.
func selfSigned(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "api.pem"), filepath.Join(dir, "api.key")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600)
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// With a certificate and key the listener speaks HTTPS only, and answers
// a bouncer that trusts the certificate.
func TestServeTLS(t *testing.T) {
	f := newFixture(t, Config{})
	f.block("10.201.0.2", decide.Administrator, "manual", time.Hour)
	certFile, keyFile, pool := selfSigned(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.s.ServeListener(ctx, ln, certFile, keyFile) }()
	get := func(c *http.Client, url string) (*http.Response, error) {
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		req.Header.Set("X-Api-Key", key1)
		return c.Do(req)
	}
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := get(c, "https://"+ln.Addr().String()+"/v1/decisions/stream?startup=true")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("HTTPS: %v %v", resp, err)
	}
	resp.Body.Close()
	if resp, err := get(&http.Client{Timeout: 5 * time.Second}, "http://"+ln.Addr().String()+"/v1/decisions"); err == nil && resp.StatusCode == http.StatusOK {
		t.Error("plain HTTP answered on the TLS listener")
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("ServeListener: %v", err)
	}
	// A key that does not go with its certificate is an error, at once.
	ln2, _ := net.Listen("tcp", "127.0.0.1:0")
	if err := f.s.ServeListener(context.Background(), ln2, certFile, certFile); err == nil {
		t.Error("a certificate as its own key: no error")
	}
}
