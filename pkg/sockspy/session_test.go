package sockspy

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestSessionStopsWhenTheReaderOfItsStreamGoesAway: a capture streamed
// into a pipe (Wireshark reading stdout) whose reader closes while no
// client talks ends by itself, removes the proxy's socket and says why.
func TestSessionStopsWhenTheReaderOfItsStreamGoesAway(t *testing.T) {
	dir := t.TempDir()
	srv := filepath.Join(dir, "srv.sock")
	serveStream(t, srv, func(c net.Conn) { io.Copy(c, c); c.Close() })
	plan, err := NewPlan(Config{Socket: srv, Listen: filepath.Join(dir, "proxy.sock")})
	if err != nil {
		t.Fatal(err)
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pw.Close()
	ready := make(chan struct{})
	session := &Session{Plan: plan, Stdout: pw, Watch: pw, Ready: func() { close(ready) }}
	ran := make(chan error, 1)
	go func() { ran <- session.Run(context.Background()) }()
	select {
	case <-ready:
	case err := <-ran:
		t.Fatalf("Run returned before serving: %v", err)
	}
	if _, err := io.ReadFull(pr, make([]byte, 24)); err != nil {
		t.Fatalf("no pcap header in the pipe: %v", err)
	}
	pr.Close()
	select {
	case err := <-ran:
		if !errors.Is(err, ErrReaderGone) {
			t.Errorf("Run returned %v, want ErrReaderGone", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the session still runs 20s after the reader of its stream went away")
	}
	if _, err := os.Lstat(plan.Listen); !os.IsNotExist(err) {
		t.Errorf("proxy socket left behind: %v", err)
	}
}
