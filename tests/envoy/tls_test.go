package envoy

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// issued is a certificate with its key, and the CA that signed it.
type issued struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func (c issued) pair() tls.Certificate {
	return tls.Certificate{Certificate: [][]byte{c.cert.Raw}, PrivateKey: c.key, Leaf: c.cert}
}

var serial int64 = 100

// issue makes a certificate for template, signed by ca (self-signed when ca is nil).
func issue(t *testing.T, template *x509.Certificate, ca *issued) issued {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial++
	template.SerialNumber = big.NewInt(serial)
	template.NotBefore = time.Now().Add(-time.Hour)
	template.NotAfter = time.Now().Add(time.Hour)
	parent, signer := template, key
	if ca != nil {
		parent, signer = ca.cert, ca.key
	}
	der, err := x509.CreateCertificate(rand.Reader, template, parent, &key.PublicKey, signer)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return issued{cert, key}
}

func newCA(t *testing.T, name string) issued {
	return issue(t, &x509.Certificate{
		Subject: pkix.Name{CommonName: name}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}, nil)
}

func serverCert(t *testing.T, ca issued) issued {
	return issue(t, &x509.Certificate{
		Subject: pkix.Name{CommonName: "arbiter"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, &ca)
}

func clientCert(t *testing.T, ca issued, spiffe string) issued {
	id, _ := url.Parse(spiffe)
	return issue(t, &x509.Certificate{
		Subject: pkix.Name{CommonName: "envoy"}, URIs: []*url.URL{id},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, &ca)
}

func writePEM(t *testing.T, path, kind string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path+".tmp", pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		t.Fatal(err)
	}
}

func writePair(t *testing.T, dir string, c issued) {
	key, err := x509.MarshalPKCS8PrivateKey(c.key)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, filepath.Join(dir, "key.pem"), "PRIVATE KEY", key)
	writePEM(t, filepath.Join(dir, "cert.pem"), "CERTIFICATE", c.cert.Raw)
}

// httpsClient trusts ca and presents client (if any); one connection, kept alive.
func httpsClient(ca issued, client *issued) *http.Client {
	roots := x509.NewCertPool()
	roots.AddCert(ca.cert)
	config := &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	if client != nil {
		config.Certificates = []tls.Certificate{client.pair()}
	}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: config, MaxConnsPerHost: 1, MaxIdleConnsPerHost: 1, ForceAttemptHTTP2: true,
	}}
}

// readyOver asks /readyz and answers the serial of the server certificate it was served with.
func readyOver(t *testing.T, client *http.Client, address string) (*big.Int, error) {
	t.Helper()
	response, err := client.Get("https://" + address + "/readyz")
	if err != nil {
		return nil, err
	}
	defer response.Body.Close()
	body, _ := io.ReadAll(response.Body)
	if response.StatusCode != 200 || !strings.HasPrefix(string(body), "ready") {
		t.Fatalf("readyz: %d %s", response.StatusCode, body)
	}
	return response.TLS.PeerCertificates[0].SerialNumber, nil
}

func TestMutualTLSOnBothListenersWithCertificatesRotatedOnReload(t *testing.T) {
	dir := t.TempDir()
	ca, stranger := newCA(t, "fleet CA"), newCA(t, "another CA")
	first := serverCert(t, ca)
	writePair(t, dir, first)
	writePEM(t, filepath.Join(dir, "ca.pem"), "CERTIFICATE", ca.cert.Raw)
	server, err := start("--tls-cert", filepath.Join(dir, "cert.pem"), "--tls-key", filepath.Join(dir, "key.pem"),
		"--client-ca", filepath.Join(dir, "ca.pem"), "--reload-interval", "0")
	if err != nil {
		t.Fatal(err)
	}
	defer server.stop()
	envoy := clientCert(t, ca, "spiffe://gitlab.example.com/envoy")

	// gRPC: Envoy's client over mutual TLS.
	roots := x509.NewCertPool()
	roots.AddCert(ca.cert)
	creds := credentials.NewTLS(&tls.Config{RootCAs: roots, Certificates: []tls.Certificate{envoy.pair()}})
	conn, err := grpc.NewClient(server.GRPC, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	deadline := time.Now().Add(30 * time.Second)
	for {
		status, err := healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{})
		if err == nil && status.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("never ready over TLS: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	response, err := authv3.NewAuthorizationClient(conn).Check(context.Background(), &authv3.CheckRequest{
		Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
			Http: &authv3.AttributeContext_HttpRequest{Method: "GET", Path: "/api/v4/projects/1"}}}})
	if err != nil || response.GetStatus().GetCode() != int32(code.Code_OK) {
		t.Fatalf("Check over mutual TLS: %v %v", response, err)
	}
	// Without a client certificate, or with one of another CA, no connection.
	for name, creds := range map[string]credentials.TransportCredentials{
		"no client certificate": credentials.NewTLS(&tls.Config{RootCAs: roots}),
		"another CA's client":   credentials.NewTLS(&tls.Config{RootCAs: roots, Certificates: []tls.Certificate{clientCert(t, stranger, "spiffe://x/y").pair()}}),
	} {
		refused, _ := grpc.NewClient(server.GRPC, grpc.WithTransportCredentials(creds))
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		_, err := healthpb.NewHealthClient(refused).Check(ctx, &healthpb.HealthCheckRequest{})
		cancel()
		refused.Close()
		if err == nil {
			t.Errorf("gRPC with %s was served", name)
		}
	}

	// HTTP: the same certificates.
	kept := httpsClient(ca, &envoy)
	got, err := readyOver(t, kept, server.HTTP)
	if err != nil || got.Cmp(first.cert.SerialNumber) != 0 {
		t.Fatalf("first certificate: %v %v", got, err)
	}
	if _, err := readyOver(t, httpsClient(ca, nil), server.HTTP); err == nil {
		t.Error("HTTP without a client certificate was served")
	}

	// Rotation: new files and SIGHUP. New connections get the new certificate; the open one
	// keeps its own and keeps answering.
	second := serverCert(t, ca)
	writePair(t, dir, second)
	server.cmd.Process.Signal(syscall.SIGHUP)
	deadline = time.Now().Add(30 * time.Second)
	for {
		got, err := readyOver(t, httpsClient(ca, &envoy), server.HTTP)
		if err == nil && got.Cmp(second.cert.SerialNumber) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the rotated certificate never served: %v %v", got, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got, err := readyOver(t, kept, server.HTTP); err != nil || got.Cmp(first.cert.SerialNumber) != 0 {
		t.Errorf("the open connection after rotation: %v %v", got, err)
	}
	// A broken key file on reload: reported, and the serving certificate kept.
	if err := os.WriteFile(filepath.Join(dir, "key.pem"), []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	server.cmd.Process.Signal(syscall.SIGHUP)
	time.Sleep(500 * time.Millisecond)
	if got, err := readyOver(t, httpsClient(ca, &envoy), server.HTTP); err != nil || got.Cmp(second.cert.SerialNumber) != 0 {
		t.Errorf("after a broken reload: %v %v", got, err)
	}
	if err := server.stop(); err != nil {
		t.Errorf("exit: %v", err)
	}
}
