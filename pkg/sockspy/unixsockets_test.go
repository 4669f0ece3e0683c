package sockspy

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// procNetUnixSample is /proc/net/unix as Linux 6.x writes it (%5lu
// inodes, one space before the path), with the cases that matter: a path
// with two spaces in a row, abstract names (a NUL shown as @), an unbound
// socket, a seqpacket listener, datagram sockets unconnected and connected,
// and the rest of a line cut by a newline in a path.
const procNetUnixSample = `Num       RefCount Protocol Flags    Type St Inode Path
0000000000000000: 00000003 00000000 00000000 0001 03   351
0000000000000000: 00000002 00000000 00010000 0001 01 5464081 /tmp/two  spaces.sock
0000000000000000: 00000002 00000000 00010000 0005 01 5464083 /run/seq.sock
0000000000000000: 00000002 00000000 00000000 0002 01 5464082 @abs@tract
0000000000000000: 00000002 00000000 00000000 0002 03 5464090 /run/client.sock
0000000000000000: 00000002 00000000 00000000 0001 03 5464091 /run/connected-stream.sock
0000000000000000: 00000002 00000000 00010000 0001 01 5464092 /tmp/new
line.sock
0000000000000000: 00000002 00000000 00010000 0001 01 5464093 @/tmp/.X11-unix/X0
`

func TestParseProcNetUnixReadsWhatTheKernelWrites(t *testing.T) {
	got, err := ParseProcNetUnix(strings.NewReader(procNetUnixSample))
	if err != nil {
		t.Fatal(err)
	}
	want := []UnixSocket{
		{Path: "", Type: Stream, Inode: 351},
		{Path: "/tmp/two  spaces.sock", Type: Stream, Listening: true, Inode: 5464081},
		{Path: "/run/seq.sock", Type: SeqPacket, Listening: true, Inode: 5464083},
		{Path: "@abs@tract", Type: Datagram, Listening: true, Inode: 5464082},
		{Path: "/run/client.sock", Type: Datagram, Inode: 5464090},
		{Path: "/run/connected-stream.sock", Type: Stream, Inode: 5464091},
		{Path: "/tmp/new", Type: Stream, Listening: true, Inode: 5464092},
		{Path: "@/tmp/.X11-unix/X0", Type: Stream, Listening: true, Inode: 5464093},
	}
	if !slices.Equal(got, want) {
		t.Errorf("parsed\n%+v\nwant\n%+v", got, want)
	}
	var paths []string
	for _, s := range listening(got) {
		paths = append(paths, s.Path)
	}
	if want := []string{"/run/seq.sock", "/tmp/new", "/tmp/two  spaces.sock", "@/tmp/.X11-unix/X0", "@abs@tract"}; !slices.Equal(paths, want) {
		t.Errorf("listening %q, want %q", paths, want)
	}
}

// TestParseProcNetUnixIsBounded: other users make the sockets listed; the
// parser reads at most 64 MiB of them.
func TestParseProcNetUnixIsBounded(t *testing.T) {
	line := "0000000000000000: 00000002 00000000 00010000 0001 01 5464081 /run/" + strings.Repeat("x", 90) + ".sock\n"
	n := procNetUnixMaxBytes/len(line) + 1000
	got, err := ParseProcNetUnix(strings.NewReader(strings.Repeat(line, n)))
	if err != ErrProcNetUnixTooLarge || len(got) >= n || len(got) < procNetUnixMaxBytes/len(line)-1 {
		t.Errorf("%d of %d sockets, %v; want the first 64 MiB and ErrProcNetUnixTooLarge", len(got), n, err)
	}
}

// TestListeningSocketsListsTheHostsServers: a server that listens on a
// path, one on an abstract name and a datagram server show up, with
// their types; a proxy's socket bound through /proc/self/fd does not.
func TestListeningSocketsListsTheHostsServers(t *testing.T) {
	dir := t.TempDir()
	stream := filepath.Join(dir, "two  spaces.sock")
	serveStream(t, stream, func(c net.Conn) { c.Close() })
	abstract := fmt.Sprintf("@opsctl-test-list-%d", os.Getpid())
	ln, err := net.Listen("unix", abstract)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	dgram := filepath.Join(dir, "log.sock")
	serveDatagrams(t, dgram, func(*net.UnixConn, []byte, *net.UnixAddr) {})
	listenFor(t, Stream, filepath.Join(dir, "proxy.sock"), 0o600)

	sockets, err := ListeningSockets()
	if err != nil {
		t.Fatal(err)
	}
	types := map[string]SocketType{}
	for _, s := range sockets {
		types[s.Path] = s.Type
		if strings.HasPrefix(s.Path, "/proc/self/fd/") {
			t.Errorf("a socket bound through /proc/self/fd is listed: %s", s.Path)
		}
	}
	for path, want := range map[string]SocketType{stream: Stream, abstract: Stream, dgram: Datagram} {
		if got, ok := types[path]; !ok || got != want {
			t.Errorf("%s: listed %v (%v), want %v", path, ok, got, want)
		}
	}
	if !slices.IsSortedFunc(sockets, func(a, b UnixSocket) int { return strings.Compare(a.Path, b.Path) }) {
		t.Errorf("not sorted by path")
	}
}

// FuzzParseProcNetUnix: whatever the table holds (paths are bytes other
// users chose), parsing never panics, every socket read is of a known
// type, no path holds a newline, and a socket written back as the kernel
// writes it parses to itself.
func FuzzParseProcNetUnix(f *testing.F) {
	f.Add([]byte(procNetUnixSample))
	f.Add([]byte("0000000000000000: 00000002 00000000 00010000 0001 01 1 \n"))
	f.Add([]byte("ffff: 1 2 3 4 5 6 /x\xff}{\n"))
	f.Fuzz(func(t *testing.T, table []byte) {
		sockets, _ := ParseProcNetUnix(strings.NewReader(string(table)))
		for _, s := range sockets {
			if s.Type != Stream && s.Type != Datagram && s.Type != SeqPacket {
				t.Fatalf("socket of type %d", s.Type)
			}
			if strings.Contains(s.Path, "\n") {
				t.Fatalf("path %q", s.Path)
			}
			line := procNetUnixLine(s)
			again, err := ParseProcNetUnix(strings.NewReader(line))
			if err != nil || len(again) != 1 || again[0] != s {
				t.Fatalf("%+v written as %q parses to %+v, %v", s, line, again, err)
			}
		}
	})
}

// procNetUnixLine writes s as the kernel does.
func procNetUnixLine(s UnixSocket) string {
	flags, state := 0, 3
	if s.Listening {
		flags, state = acceptCon, 1
		if s.Type == Datagram {
			flags = 0
		}
	}
	line := fmt.Sprintf("0000000000000000: 00000002 00000000 %08X %04X %02X %5d", flags, int(s.Type), state, s.Inode)
	if s.Path != "" {
		line += " " + s.Path
	}
	return line + "\n"
}
