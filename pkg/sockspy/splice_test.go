package sockspy

import (
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

func TestPendingFDsSeesDescriptorBehindPlainData(t *testing.T) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fds[0])
	defer unix.Close(fds[1])
	oob := make([]byte, unix.CmsgSpace(4*16))
	if got, err := pendingFDs(fds[1], oob); err != nil || got {
		t.Fatalf("empty queue: got %v, %v", got, err)
	}
	if _, err := unix.Write(fds[0], []byte("plain")); err != nil {
		t.Fatal(err)
	}
	if got, err := pendingFDs(fds[1], oob); err != nil || got {
		t.Fatalf("plain data only: got %v, %v", got, err)
	}
	f, err := os.Open("/dev/null")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := unix.Sendmsg(fds[0], []byte("with fd"), unix.UnixRights(int(f.Fd())), nil, 0); err != nil {
		t.Fatal(err)
	}
	if got, err := pendingFDs(fds[1], oob); err != nil || !got {
		t.Fatalf("descriptor behind plain data: got %v, %v", got, err)
	}
	// The peek consumed nothing.
	if q, _ := inQueue(fds[1]); q != len("plain")+len("with fd") {
		t.Fatalf("queue holds %d bytes after peeking", q)
	}
}
