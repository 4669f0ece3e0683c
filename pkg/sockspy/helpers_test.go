package sockspy

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"testing"
)

// serveStream listens on a UNIX stream socket at path and runs handle on
// a goroutine of its own for every connection, until the test ends.
// handle closes the connection.
func serveStream(t *testing.T, path string, handle func(net.Conn)) {
	t.Helper()
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go handle(c)
		}
	}()
}

// serveDatagrams binds a UNIX datagram socket at path and runs handle on
// each datagram it receives (srv is the socket, to reply from), until the
// test ends.
func serveDatagrams(t *testing.T, path string, handle func(srv *net.UnixConn, msg []byte, from *net.UnixAddr)) {
	t.Helper()
	srv, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	go func() {
		buf := make([]byte, 65536)
		for {
			n, from, err := srv.ReadFromUnix(buf)
			if err != nil {
				return
			}
			handle(srv, buf[:n], from)
		}
	}()
}

// runProxy starts p in-process (so the race detector sees it) and returns
// once it serves. stop ends it and returns what Run returned.
func runProxy(p *Proxy) (stop func() error) {
	ready := make(chan struct{})
	p.Ready = func() { close(ready) }
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- p.Run(ctx) }()
	select {
	case <-ready:
	case err := <-ran:
		cancel()
		return func() error { return err }
	}
	return func() error {
		cancel()
		return <-ran
	}
}

// proxyToFile plans a proxy at dir/proxy.sock for the socket target and a
// pcap capture into dir/cap.pcap, which the test closes.
func proxyToFile(t *testing.T, dir, target string) (*Plan, *Capture, *os.File) {
	t.Helper()
	plan, err := NewPlan(Config{Socket: target, Listen: filepath.Join(dir, "proxy.sock")})
	if err != nil {
		t.Fatal(err)
	}
	capture, out := pcapFile(t, filepath.Join(dir, "cap.pcap"))
	return plan, capture, out
}

// pcapFile creates a pcap capture into a new file at path, which is
// closed when the test ends (the test closes the capture).
func pcapFile(t *testing.T, path string) (*Capture, *os.File) {
	t.Helper()
	out, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { out.Close() })
	capture, err := NewCapture(out, CaptureOptions{Format: FormatPcap})
	if err != nil {
		t.Fatal(err)
	}
	return capture, out
}
