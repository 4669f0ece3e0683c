package imapauth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// testPKI is a throw-away certificate authority and the server certificates
// the tests need: good, for a wrong name, expired, and self-signed.
type testPKI struct {
	dir    string
	caCert *x509.Certificate
	caKey  *ecdsa.PrivateKey
	CAFile string
}

// pair is a certificate and key written as PEM files.
type pair struct {
	CertFile, KeyFile string
	TLS               tls.Certificate
}

func newTestPKI(t testing.TB) *testPKI {
	t.Helper()
	dir := t.TempDir()
	key := newKey(t)
	template := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "opsctl test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, template, template, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(der)
	p := &testPKI{dir: dir, caCert: ca, caKey: key, CAFile: filepath.Join(dir, "ca.pem")}
	writePEM(t, p.CAFile, "CERTIFICATE", der)
	return p
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

func writePEM(t testing.TB, path, kind string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
}

// serverNames are the names every good server certificate carries.
var serverNames = []string{"localhost", "imap.test"}
var serverIPs = []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("127.0.0.2")}

// issue signs a server certificate for names and ips, valid from notBefore
// to notAfter; selfSigned signs it with its own key instead of the CA's.
func (p *testPKI) issue(t testing.TB, name string, names []string, ips []net.IP, notBefore, notAfter time.Time, selfSigned bool) pair {
	t.Helper()
	key := newKey(t)
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	template := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: names[0]},
		DNSNames:     names,
		IPAddresses:  ips,
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	parent, signer := p.caCert, p.caKey
	if selfSigned {
		parent, signer = template, key
	}
	der, err := x509.CreateCertificate(rand.Reader, template, parent, &key.PublicKey, signer)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	out := pair{CertFile: filepath.Join(p.dir, name+".crt"), KeyFile: filepath.Join(p.dir, name+".key")}
	writePEM(t, out.CertFile, "CERTIFICATE", der)
	writePEM(t, out.KeyFile, "PRIVATE KEY", keyDER)
	out.TLS, err = tls.LoadX509KeyPair(out.CertFile, out.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func (p *testPKI) good(t testing.TB) pair {
	return p.issue(t, "good", serverNames, serverIPs, time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour), false)
}

func (p *testPKI) wrongName(t testing.TB) pair {
	return p.issue(t, "wrongname", []string{"somewhere-else.test"}, nil, time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour), false)
}

// ipAsDNSName carries the server's IP addresses only as DNS names, not as
// IP entries: a certificate that must not pass for an IP address host.
func (p *testPKI) ipAsDNSName(t testing.TB) pair {
	return p.issue(t, "ipasdns", []string{"imap.test", "127.0.0.1", "127.0.0.2"}, nil, time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour), false)
}

func (p *testPKI) expired(t testing.TB) pair {
	return p.issue(t, "expired", serverNames, serverIPs, time.Now().Add(-48*time.Hour), time.Now().Add(-24*time.Hour), false)
}

func (p *testPKI) selfSigned(t testing.TB) pair {
	return p.issue(t, "selfsigned", serverNames, serverIPs, time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour), true)
}
