package sockspy

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/opsctl/opsctl/internal/inputerr"
)

// TestOpenOutputTakesWhatTheUserMeant: the kinds of -w that are written
// to, and how.
func TestOpenOutputTakesWhatTheUserMeant(t *testing.T) {
	dir := t.TempDir()

	created := filepath.Join(dir, "new.pcap")
	o, err := OpenOutput(created)
	if err != nil {
		t.Fatal(err)
	}
	o.Close()
	if st, _ := os.Stat(created); st.Mode().Perm() != 0o600 || o.Streaming() {
		t.Errorf("a new capture file has mode %v (want 0600), streaming %v", st.Mode(), o.Streaming())
	}

	// An earlier capture is replaced by a new file, never written into:
	// whoever opened it before keeps the old one.
	old := filepath.Join(dir, "old.pcap")
	os.WriteFile(old, []byte("an earlier capture"), 0o644)
	opened, err := os.Open(old)
	if err != nil {
		t.Fatal(err)
	}
	defer opened.Close()
	o, err = OpenOutput(old)
	if err != nil {
		t.Fatal(err)
	}
	o.Write([]byte("new"))
	o.Close()
	if st, _ := os.Stat(old); st.Size() != 3 || st.Mode().Perm() != 0o600 {
		t.Errorf("an earlier capture: size %d mode %v, want 3, 0600", st.Size(), st.Mode())
	}
	if b, _ := io.ReadAll(opened); string(b) != "an earlier capture" {
		t.Errorf("a reader of the earlier capture read %q", b)
	}
	if names, _ := os.ReadDir(dir); len(names) != 2 {
		t.Errorf("the folder holds %v, want new.pcap and old.pcap", names)
	}

	o, err = OpenOutput("/dev/null")
	if err != nil {
		t.Fatalf("/dev/null: %v", err)
	}
	o.Close()

	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	o, err = OpenOutput(fmt.Sprintf("/dev/fd/%d", w.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	if !o.Streaming() {
		t.Errorf("a pipe is not streamed to")
	}
	o.Write([]byte("through the descriptor"))
	o.Close()
	w.Close()
	buf := make([]byte, 64)
	if n, _ := r.Read(buf); string(buf[:n]) != "through the descriptor" {
		t.Errorf("read %q from the pipe", buf[:n])
	}
	if err := o.Discard(); err != nil {
		t.Errorf("Discard of a descriptor: %v", err)
	}
}

// TestOpenOutputRefusesWhatIsNotAFileToWrite: every refusal is an
// *inputerr.Error naming the input OpenOutput.path, and touches nothing.
func TestOpenOutputRefusesWhatIsNotAFileToWrite(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "target")
	os.WriteFile(target, []byte("keep"), 0o600)
	link := filepath.Join(dir, "link")
	os.Symlink(target, link)
	dangling := filepath.Join(dir, "dangling")
	os.Symlink(filepath.Join(dir, "nothing"), dangling)
	linked := filepath.Join(dir, "linked")
	os.Link(target, linked)
	sock := filepath.Join(dir, "s.sock")
	serveStream(t, sock, func(c net.Conn) { c.Close() })
	cases := map[string]string{
		link:                             "is a symbolic link",
		dangling:                         "is a symbolic link",
		linked:                           "has 2 hard links",
		dir:                              "is a folder",
		sock:                             "is a socket",
		filepath.Join(dir, "none", "x"):  "folder " + filepath.Join(dir, "none") + " does not exist",
		filepath.Join(target, "x"):       target + " is not a folder",
		fmt.Sprintf("/dev/fd/%d", 1<<20): "not an open descriptor",
	}
	for path, want := range cases {
		_, err := OpenOutput(path)
		var inputErr *inputerr.Error
		if !errors.As(err, &inputErr) || !strings.Contains(err.Error(), "OpenOutput.path "+path+": "+want) {
			t.Errorf("%s: %v, want an input error with %q", path, err, want)
		}
	}
	if b, _ := os.ReadFile(target); string(b) != "keep" {
		t.Errorf("the link's target was changed: %q", b)
	}
	if _, err := os.Lstat(filepath.Join(dir, "nothing")); !os.IsNotExist(err) {
		t.Errorf("a file was created through the dangling link")
	}
	var st unix.Stat_t
	if unix.Stat(target, &st); st.Mode&0o777 != 0o600 {
		t.Errorf("the link's target has mode %o", st.Mode&0o777)
	}
}
