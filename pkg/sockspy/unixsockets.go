package sockspy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// UnixSocket is one line of /proc/net/unix: a UNIX socket of this network
// namespace.
type UnixSocket struct {
	// Path is the address the socket is bound to: a file path, or @name
	// for the abstract namespace (a NUL within the name shows as @, as
	// ss(8) shows it). Empty for an unbound socket.
	Path string
	Type SocketType
	// Listening: a stream or seqpacket socket that accepts clients, or a
	// bound datagram socket that is not connected (a server's).
	Listening bool
	Inode     uint64
}

// procNetUnixMaxBytes bounds what ParseProcNetUnix reads: other users
// make the sockets it lists, as many as they like (a line is at most about
// 190 bytes: 108 of address after the numbers).
const procNetUnixMaxBytes = 64 << 20

// acceptCon is __SO_ACCEPTCON in the Flags column: the socket listens.
const acceptCon = 0x10000

// socketUnconnected is SS_UNCONNECTED in the St column.
const socketUnconnected = 1

// ErrProcNetUnixTooLarge: /proc/net/unix is larger than
// ParseProcNetUnix reads; the sockets before the cut are returned.
var ErrProcNetUnixTooLarge = errors.New("more than 64 MiB of sockets")

// ParseProcNetUnix reads the table of /proc/net/unix:
//
//	Num       RefCount Protocol Flags    Type St Inode Path
//	0000000000000000: 00000002 00000000 00010000 0001 01 25631 /run/app.sock
//
// The path is what follows the inode after one space, spaces included.
// A line that does not have this form (the header, the rest of a line cut
// by a newline in a path) is skipped. At most 64 MiB are read, in lines
// of at most 4 KiB: beyond that the sockets read so far come with an
// error.
func ParseProcNetUnix(r io.Reader) ([]UnixSocket, error) {
	limited := &io.LimitedReader{R: r, N: procNetUnixMaxBytes + 1}
	sc := bufio.NewScanner(limited)
	sc.Buffer(make([]byte, 0, 4096), 4096)
	sc.Split(splitLines)
	var sockets []UnixSocket
	for sc.Scan() {
		if s, ok := parseProcNetUnixLine(sc.Text()); ok {
			sockets = append(sockets, s)
		}
	}
	if err := sc.Err(); err != nil {
		return sockets, err
	}
	if limited.N <= 0 {
		return sockets, ErrProcNetUnixTooLarge
	}
	return sockets, nil
}

// splitLines splits at newlines only: a path may end in a carriage
// return, which bufio.ScanLines would drop.
func splitLines(data []byte, atEOF bool) (advance int, token []byte, err error) {
	if i := bytes.IndexByte(data, '\n'); i >= 0 {
		return i + 1, data[:i], nil
	}
	if atEOF && len(data) > 0 {
		return len(data), data, nil
	}
	return 0, nil, nil
}

// parseProcNetUnixLine parses one line of the table; ok is false for the
// header and anything else that is not a socket's line.
func parseProcNetUnixLine(line string) (UnixSocket, bool) {
	// Num: RefCount Protocol Flags Type St Inode, then " Path" or nothing.
	var fields [7]string
	rest := line
	for i := range fields {
		rest = strings.TrimLeft(rest, " ")
		end := strings.IndexByte(rest, ' ')
		if end < 0 {
			end = len(rest)
		}
		fields[i], rest = rest[:end], rest[end:]
	}
	num, ok := strings.CutSuffix(fields[0], ":")
	if !ok || !isHex(num) {
		return UnixSocket{}, false
	}
	var hex [4]uint64 // RefCount, Protocol, Flags, Type
	for i := range hex {
		v, err := strconv.ParseUint(fields[i+1], 16, 32)
		if err != nil {
			return UnixSocket{}, false
		}
		hex[i] = v
	}
	state, errState := strconv.ParseUint(fields[5], 16, 8)
	inode, errInode := strconv.ParseUint(fields[6], 10, 64)
	if errState != nil || errInode != nil {
		return UnixSocket{}, false
	}
	s := UnixSocket{Type: SocketType(hex[3]), Inode: inode}
	if rest != "" {
		path, ok := strings.CutPrefix(rest, " ")
		if !ok || path == "" {
			return UnixSocket{}, false
		}
		s.Path = path
	}
	switch s.Type {
	case Stream, SeqPacket:
		s.Listening = hex[2]&acceptCon != 0
	case Datagram:
		s.Listening = s.Path != "" && state == socketUnconnected
	default:
		return UnixSocket{}, false
	}
	return s, true
}

func isHex(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

// ListeningSockets lists the sockets of this network namespace that
// clients can connect to by name: listening stream and seqpacket sockets
// and bound datagram servers, each address once, sorted. Sockets bound
// through /proc/self/fd (a proxy's own, as sockfile binds them) are left
// out: nobody else can reach them by that name.
func ListeningSockets() ([]UnixSocket, error) {
	f, err := os.Open("/proc/net/unix")
	if err != nil {
		return nil, fmt.Errorf("listing UNIX sockets: %w", err)
	}
	defer f.Close()
	all, err := ParseProcNetUnix(f)
	if err != nil && !errors.Is(err, ErrProcNetUnixTooLarge) {
		return nil, fmt.Errorf("listing UNIX sockets: /proc/net/unix: %w", err)
	}
	return listening(all), nil
}

// listening keeps the listening sockets of all, each address once (the
// first listed), sorted by address.
func listening(all []UnixSocket) []UnixSocket {
	seen := map[string]bool{}
	var out []UnixSocket
	for _, s := range all {
		if !s.Listening || s.Path == "" || seen[s.Path] || strings.HasPrefix(s.Path, "/proc/self/fd/") {
			continue
		}
		seen[s.Path] = true
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b UnixSocket) int { return strings.Compare(a.Path, b.Path) })
	return out
}

// procSocketType looks name (a path, absolute or not, or @name) up in
// /proc/net/unix and returns the type of a listening socket bound there.
func procSocketType(name string) (SocketType, bool) {
	f, err := os.Open("/proc/net/unix")
	if err != nil {
		return 0, false
	}
	defer f.Close()
	all, _ := ParseProcNetUnix(f)
	want := map[string]bool{name: true}
	if !isAbstract(name) {
		if abs, err := filepath.Abs(name); err == nil {
			want[abs] = true
		}
	}
	for _, s := range all {
		// A bound datagram socket is a server's even when connected.
		if want[s.Path] && (s.Listening || s.Type == Datagram) {
			return s.Type, true
		}
	}
	return 0, false
}
