package sockspy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/opsctl/opsctl/internal/inputerr"
	"github.com/opsctl/opsctl/internal/testenv"
)

// TestOpenFIFOTakesOnlyAFIFOOfItsOwn: the extcap's --fifo is in /tmp, a
// folder every user writes to, and opsctl may run as root (a root
// Wireshark). A link there (to a root file, to another FIFO), a regular
// file, a missing name or a FIFO another user made is refused, and nothing
// is written.
func TestOpenFIFOTakesOnlyAFIFOOfItsOwn(t *testing.T) {
	dir := t.TempDir()
	victim := filepath.Join(dir, "victim")
	os.WriteFile(victim, []byte("keep"), 0o600)
	fifo := filepath.Join(dir, "real.fifo")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	cases := map[string]struct {
		make func(path string)
		want string
	}{
		"link to a file": {func(p string) { os.Symlink(victim, p) }, "is a symbolic link"},
		"link to a FIFO": {func(p string) { os.Symlink(fifo, p) }, "is a symbolic link"},
		"regular file":   {func(p string) { os.WriteFile(p, nil, 0o600) }, "is a regular file"},
		"missing":        {func(p string) {}, "no such file or directory"},
		"folder":         {func(p string) { os.Mkdir(p, 0o700) }, "is a folder"},
		"another's FIFO": {func(p string) { unix.Mkfifo(p, 0o666); os.Chown(p, 65534, 65534) }, "belongs to uid 65534"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			if name == "another's FIFO" {
				testenv.NeedRoot(t)
			}
			path := filepath.Join(dir, strings.ReplaceAll(name, " ", "-"))
			tc.make(path)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			out, err := OpenFIFO(ctx, path)
			var inputErr *inputerr.Error
			if err == nil || !errors.As(err, &inputErr) || !strings.Contains(err.Error(), "OpenFIFO.path "+path+": "+tc.want) {
				t.Errorf("%v, want an input error with %q", err, tc.want)
			}
			if out != nil {
				out.Close()
			}
		})
	}
	if b, _ := os.ReadFile(victim); string(b) != "keep" {
		t.Errorf("the link's target was written: %q", b)
	}
}

// TestOpenFIFOWaitsForItsReader: the open returns once Wireshark opens
// the FIFO for reading, and what is written reaches the reader.
func TestOpenFIFOWaitsForItsReader(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "wireshark_extcap_opsctl_sock")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	read := make(chan string, 1)
	go func() {
		r, err := os.Open(fifo)
		if err != nil {
			read <- err.Error()
			return
		}
		defer r.Close()
		b, _ := io.ReadAll(r)
		read <- string(b)
	}()
	out, err := OpenFIFO(context.Background(), fifo)
	if err != nil {
		t.Fatal(err)
	}
	if !out.Streaming() {
		t.Errorf("a FIFO is not flushed per packet")
	}
	out.Write([]byte("pcapng"))
	out.Close()
	if got := <-read; got != "pcapng" {
		t.Errorf("the reader got %q", got)
	}
	if err := out.Discard(); err != nil {
		t.Errorf("Discard: %v", err)
	}
	if _, err := os.Lstat(fifo); err != nil {
		t.Errorf("the FIFO is gone after Discard: %v", err)
	}
}

// TestOpenFIFOGivesUpWhenItsContextEnds: no reader ever comes (Wireshark
// failed before it opened the FIFO) and SIGTERM arrives, before the open
// or while it waits: the open must not hang in open(2).
func TestOpenFIFOGivesUpWhenItsContextEnds(t *testing.T) {
	for _, before := range []bool{true, false} {
		t.Run(fmt.Sprintf("ended before the open=%v", before), func(t *testing.T) {
			fifo := filepath.Join(t.TempDir(), "nobody-reads")
			if err := unix.Mkfifo(fifo, 0o600); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			if before {
				cancel()
			}
			done := make(chan error, 1)
			go func() {
				out, err := OpenFIFO(ctx, fifo)
				if out != nil {
					out.Close()
				}
				done <- err
			}()
			cancel()
			select {
			case err := <-done:
				if !errors.Is(err, context.Canceled) {
					t.Errorf("OpenFIFO returned %v, want context.Canceled", err)
				}
			case <-time.After(20 * time.Second):
				t.Fatal("OpenFIFO still waits for a reader 20s after its context ended")
			}
		})
	}
}
