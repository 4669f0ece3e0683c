package sockspy

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestSessionStopsWhenTheReaderOfItsStreamGoesAway: a capture streamed
// into a pipe (Wireshark reading stdout or its extcap FIFO) whose reader
// closes ends by itself, removes the proxy's socket and says why:
// ErrReaderGone, whether no client talks then (the watch sees it) or
// traffic finds the pipe broken (a write fails with EPIPE first).
func TestSessionStopsWhenTheReaderOfItsStreamGoesAway(t *testing.T) {
	for _, traffic := range []bool{false, true} {
		t.Run(fmt.Sprintf("traffic=%v", traffic), func(t *testing.T) {
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
			if traffic {
				conn, err := net.Dial("unix", plan.Listen)
				if err != nil {
					t.Fatal(err)
				}
				defer conn.Close()
				go io.Copy(io.Discard, conn)
				go func() {
					chunk := make([]byte, 32<<10)
					for {
						if _, err := conn.Write(chunk); err != nil {
							return
						}
					}
				}()
				// The echo fills the pipe: the writer blocks on it.
				io.ReadFull(pr, make([]byte, 4096))
			}
			pr.Close()
			select {
			case err := <-ran:
				if err != ErrReaderGone { // alone, not joined to a capture error
					t.Errorf("Run returned %v, want ErrReaderGone alone", err)
				}
			case <-time.After(20 * time.Second):
				t.Fatal("the session still runs 20s after the reader of its stream went away")
			}
			if _, err := os.Lstat(plan.Listen); !os.IsNotExist(err) {
				t.Errorf("proxy socket left behind: %v", err)
			}
		})
	}
}
