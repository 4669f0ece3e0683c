package sockspy

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/opsctl/opsctl/internal/testenv"
)

// pipeSizes maps the pipes this process holds, by inode (both ends of a
// pipe are one pipe), to their sizes.
func pipeSizes(t *testing.T) map[string]int {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	sizes := map[string]int{}
	for _, e := range entries {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		link, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name()))
		if err != nil || !strings.HasPrefix(link, "pipe:") {
			continue
		}
		if n, err := unix.FcntlInt(uintptr(fd), unix.F_GETPIPE_SZ, 0); err == nil {
			sizes[link] = n
		}
	}
	return sizes
}

// TestConnectionPipesGrowOnlyWhenBusy: a connection that sends little
// keeps pipes of the kernel's default size (pipe pages count against a
// per-user quota), one that sends more than a pipe holds gets 1 MiB ones.
func TestConnectionPipesGrowOnlyWhenBusy(t *testing.T) {
	dir := t.TempDir()
	srvPath := filepath.Join(dir, "sink.sock")
	received := make(chan int, 1024)
	serveStream(t, srvPath, func(c net.Conn) {
		defer c.Close()
		buf := make([]byte, 64<<10)
		for {
			n, err := c.Read(buf)
			if n > 0 {
				received <- n
			}
			if err != nil {
				return
			}
		}
	})
	waitReceived := func(want int) {
		t.Helper()
		timeout := time.After(20 * time.Second)
		for got := 0; got < want; {
			select {
			case n := <-received:
				got += n
			case <-timeout:
				t.Fatalf("the server received %d of %d bytes", got, want)
			}
		}
	}

	plan, capture, _ := proxyToFile(t, dir, srvPath)
	before := pipeSizes(t)
	gather, err := os.Readlink(filepath.Join("/proc/self/fd", strconv.Itoa(capture.gather.r)))
	if err != nil {
		t.Fatal(err)
	}
	stop := runProxy(&Proxy{Plan: plan, Capture: capture})
	// The connections' pipes: new since the start, not the writer's own.
	connPipes := func() (small, full int) {
		for pipe, size := range pipeSizes(t) {
			if _, old := before[pipe]; old || pipe == gather {
				continue
			}
			if size >= pipeFull {
				full++
			} else {
				small++
			}
		}
		return small, full
	}
	// pipesAre waits, a while, for the connections' pipes to be what ok
	// says: each direction's goroutine makes its forwarding pipe when it
	// starts, which may come after the other direction forwarded.
	pipesAre := func(ok func(small, full int) bool) (small, full int) {
		testenv.WaitUntil(t, 5*time.Second, func() bool {
			small, full = connPipes()
			return ok(small, full)
		})
		return small, full
	}

	quiet, err := net.Dial("unix", plan.Listen)
	if err != nil {
		t.Fatal(err)
	}
	defer quiet.Close()
	if _, err := quiet.Write([]byte("GET / HTTP/1.0\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	waitReceived(18)
	// Both directions' forwarding pipes and the stage pipe of the request.
	if small, full := pipesAre(func(small, full int) bool { return small == 3 && full == 0 }); small != 3 || full != 0 {
		t.Fatalf("a connection that sent 18 bytes: %d pipes of less than 1 MiB, %d of 1 MiB; want 3 and none", small, full)
	}

	busy, err := net.Dial("unix", plan.Listen)
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	const size = 16 << 20
	go busy.Write(make([]byte, size))
	waitReceived(size)
	// Its forwarding pipe and every stage pipe to the server grew, the
	// one made before the forwarding pipe grew too; the quiet
	// connection's did not, nor the busy one's idle direction.
	if small, full := pipesAre(func(small, full int) bool { return small == 4 && full >= 2 }); small != 4 || full < 2 {
		t.Fatalf("after a connection sent 16 MiB: %d pipes of less than 1 MiB, %d of 1 MiB; want 4 and 2 or more (pipes cannot grow for a user over /proc/sys/fs/pipe-user-pages-soft)", small, full)
	}

	quiet.Close()
	busy.Close()
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if err := capture.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestBusyConnectionIsAPipefulWaiting(t *testing.T) {
	for _, c := range []struct {
		took, queued, pipe int
		want               bool
	}{
		{took: 65536, queued: 200 << 10, pipe: 65536, want: true}, // bulk transfer
		{took: 800, queued: 3200, pipe: 65536, want: false},       // 64 writes of 50 bytes: 16 buffers took 800
		{took: 3200, queued: 3200, pipe: 65536, want: false},      // all taken
		{took: 40000, queued: 65536, pipe: 65536, want: true},     // small writes, a pipeful waiting
		{took: 1 << 20, queued: 2 << 20, pipe: 1 << 20, want: true},
	} {
		if got := busyConnection(c.took, c.queued, c.pipe); got != c.want {
			t.Errorf("took %d of %d queued into a %d-byte pipe: busy = %v, want %v", c.took, c.queued, c.pipe, got, c.want)
		}
	}
}
