package sockspy

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/opsctl/opsctl/internal/inputerr"
	"github.com/opsctl/opsctl/internal/sockfile"
)

// SocketType is the type of a UNIX socket.
type SocketType int

const (
	Stream    SocketType = 1 // SOCK_STREAM
	Datagram  SocketType = 2 // SOCK_DGRAM
	SeqPacket SocketType = 5 // SOCK_SEQPACKET
)

func (t SocketType) String() string {
	switch t {
	case Stream:
		return "stream"
	case Datagram:
		return "datagram"
	case SeqPacket:
		return "seqpacket"
	}
	return "unknown"
}

// network is the name Go's net package uses for the type.
func (t SocketType) network() string {
	switch t {
	case Datagram:
		return "unixgram"
	case SeqPacket:
		return "unixpacket"
	}
	return "unix"
}

// Config is what the user asked for. Errors about it name its fields
// ("Config.Socket"), see NewPlan.
type Config struct {
	// Socket is the socket to capture: a path, or @name for the abstract
	// namespace.
	Socket string
	// Listen is where the proxy serves (listen mode); empty with Swap.
	Listen string
	// Swap moves Socket aside and serves at its place.
	Swap bool
}

// asideSuffix names the moved-aside socket in swap mode.
const asideSuffix = ".opsctl-orig"

// Plan is a checked capture setup: every path resolved, the socket type
// known, nothing changed yet.
type Plan struct {
	Socket string     // the socket as given
	Type   SocketType // detected from the socket
	Listen string     // where the proxy serves
	// Target is where the proxy forwards: Socket, or with Swap the
	// original socket, known as Aside meanwhile (it is reached through a
	// descriptor, whatever the length of that name).
	Target string
	Swap   bool
	Aside  string // swap: where the original socket is kept meanwhile

	// Mode, UID and GID of the proxy's socket when HasOwner (filesystem
	// sockets only): those of the socket file, but for the group and
	// other bits that its folders take away (see reachers).
	Mode     fs.FileMode
	UID, GID int
	HasOwner bool
	// SocketMode is the socket file's own mode, which Mode narrows.
	SocketMode fs.FileMode

	// socketID is the socket file NewPlan checked for swap mode: the one
	// it moves aside, and nothing that took its name since.
	socketID sockfile.ID
}

// An input that cannot be used as given (a path that does not exist, is
// not the kind of file expected, or is too long for a socket address, a
// missing folder for a file to create) is an *inputerr.Error naming it in
// this package's terms: "Config.Socket", "OpenOutput.path". Every other
// error of the package (permissions, a socket nobody serves, a leftover of
// an earlier capture) is not, though its message names the input too.

// NewPlan checks cfg against the system and returns the plan, or an error
// naming the input that is wrong (Config.Socket, Config.Listen,
// Config.Swap) and what was expected.
func NewPlan(cfg Config) (*Plan, error) {
	if cfg.Socket == "" {
		return nil, inputerr.New("Config.Socket", "", "expected a socket path or @name")
	}
	if cfg.Swap == (cfg.Listen != "") {
		return nil, inputerr.New("Config.Listen", "", "expected exactly one of Config.Listen and Config.Swap")
	}
	p := &Plan{Socket: cfg.Socket, Swap: cfg.Swap, Target: cfg.Socket, Listen: cfg.Listen}
	if !isAbstract(cfg.Socket) {
		if err := sockfile.CheckPath(cfg.Socket); err != nil {
			return nil, &inputerr.Error{Name: "Config.Socket", Value: cfg.Socket, Problem: err.Error(), Err: err}
		}
		// Swap mode moves the file at the path itself: a link to a socket
		// would be moved, not the socket.
		stat := os.Stat
		if cfg.Swap {
			stat = os.Lstat
			// The swap works in that folder, as root.
			if err := checkFolder("Config.Socket", cfg.Socket); err != nil {
				return nil, err
			}
		}
		st, err := stat(cfg.Socket)
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
			cause := unwrapPathError(err)
			return nil, &inputerr.Error{Name: "Config.Socket", Value: cfg.Socket, Problem: cause.Error(), Err: cause}
		}
		if err != nil {
			return nil, fmt.Errorf("Config.Socket %s: %w", cfg.Socket, unwrapPathError(err))
		}
		if st.Mode()&fs.ModeSymlink != 0 {
			target, _ := filepath.EvalSymlinks(cfg.Socket)
			return nil, inputerr.New("Config.Swap", "", fmt.Sprintf("%s is a symbolic link to %s: swap the socket itself (Config.Socket %s)", cfg.Socket, target, shellQuote(target)))
		}
		if st.Mode()&fs.ModeSocket == 0 {
			return nil, inputerr.New("Config.Socket", cfg.Socket, fmt.Sprintf("not a UNIX socket (it is a %s)", describeMode(st.Mode())))
		}
		p.Mode = st.Mode().Perm()
		p.SocketMode = p.Mode
		if sys, ok := st.Sys().(*syscall.Stat_t); ok {
			p.UID, p.GID, p.HasOwner = int(sys.Uid), int(sys.Gid), true
			p.socketID = sockfile.ID{Dev: sys.Dev, Ino: sys.Ino}
		}
		if !cfg.Swap {
			// The proxy takes the place of the folders too: it lets in
			// only whom they let through (swap mode serves in the same
			// folder).
			group, other := reachers(cfg.Socket, uint32(p.GID))
			if !group {
				p.Mode &^= 0o070
			}
			if !other {
				p.Mode &^= 0o007
			}
		}
	}
	if !isAbstract(cfg.Listen) {
		if err := sockfile.CheckPath(cfg.Listen); err != nil {
			return nil, &inputerr.Error{Name: "Config.Listen", Value: cfg.Listen, Problem: err.Error(), Err: err}
		}
	}
	t, err := detectType(cfg.Socket)
	if err != nil {
		return nil, err
	}
	p.Type = t
	if !cfg.Swap && !isAbstract(cfg.Socket) {
		// A capture in swap mode that was killed left its dead proxy at
		// the socket's path and the server at the moved-aside name:
		// forwarding to the dead proxy would drop every client.
		aside := cfg.Socket + asideSuffix
		if _, err := os.Lstat(aside); err == nil && !stale(aside, t) && stale(cfg.Socket, t) {
			return nil, fmt.Errorf("Config.Socket %s: nobody serves it; the server is at %s, left by an earlier Config.Swap capture. "+
				"If no capture is running, restore it with: mv -f %s %s", cfg.Socket, aside, shellQuote(aside), shellQuote(cfg.Socket))
		}
	}
	if cfg.Swap {
		if isAbstract(cfg.Socket) {
			return nil, fmt.Errorf("Config.Swap: %s is an abstract socket, which has no file to move aside; use Config.Listen", cfg.Socket)
		}
		// Checked here, before anything (the capture file) is touched: the
		// swap links and renames in the socket's folder.
		if dir := filepath.Dir(cfg.Socket); unix.Access(dir, unix.W_OK) != nil {
			return nil, fmt.Errorf("Config.Swap: cannot move %s aside: no write permission on folder %s; run as root or as its owner", cfg.Socket, dir)
		}
		p.Listen = cfg.Socket
		p.Aside = cfg.Socket + asideSuffix
		p.Target = p.Aside
		if aside, err := os.Lstat(p.Aside); err == nil {
			if socket, err := os.Lstat(cfg.Socket); err == nil && os.SameFile(aside, socket) {
				// A capture that stopped between linking the original
				// aside and serving: both names are the original (mv
				// would refuse to move a file over itself).
				return nil, fmt.Errorf("Config.Swap: %s is a second name of %s left by an earlier capture: "+
					"if no capture is running, remove it with: rm %s", p.Aside, cfg.Socket, shellQuote(p.Aside))
			}
			if stale(p.Aside, t) && !stale(cfg.Socket, t) {
				// The server made a new socket during that capture: the
				// leftover is dead, and moving it back would cut the
				// server off.
				return nil, fmt.Errorf("Config.Swap: %s is left from an earlier capture and nobody serves it, while %s is served: "+
					"remove the leftover with: rm %s", p.Aside, cfg.Socket, shellQuote(p.Aside))
			}
			return nil, fmt.Errorf("Config.Swap: %s already exists: an earlier capture did not put the socket back. "+
				"If no capture is running, restore it with: mv -f %s %s", p.Aside, shellQuote(p.Aside), shellQuote(cfg.Socket))
		}
		return p, nil
	}
	if isAbstract(cfg.Listen) {
		// Checked here, before anything (the capture file) is touched.
		if cfg.Listen == cfg.Socket {
			return nil, inputerr.New("Config.Listen", cfg.Listen, "is the socket to capture; choose another name")
		}
		if !stale(cfg.Listen, t) {
			return nil, fmt.Errorf("Config.Listen %s: already in use; choose another name", cfg.Listen)
		}
		// An abstract socket has no mode: every local user may connect
		// to it, and through the proxy to the socket, with the rights of
		// whoever runs opsctl (root).
		if p.HasOwner && p.Mode&0o002 == 0 {
			return nil, inputerr.New("Config.Listen", cfg.Listen, fmt.Sprintf(
				"an abstract socket has no mode or owner: every local user could connect to it, and through it to %s, "+
					"which not everyone may reach now (mode %04o, owner %d:%d, and its folders); give a path instead",
				cfg.Socket, p.SocketMode, p.UID, p.GID))
		}
	} else {
		if cfg.Listen == cfg.Socket || sameFile(cfg.Listen, cfg.Socket) {
			return nil, inputerr.New("Config.Listen", cfg.Listen, "is the socket to capture; choose another path or use Config.Swap")
		}
		if st, err := os.Lstat(cfg.Listen); err == nil {
			if st.Mode()&fs.ModeSocket == 0 {
				return nil, inputerr.New("Config.Listen", cfg.Listen, fmt.Sprintf("already exists and is not a socket (it is a %s); choose another path", describeMode(st.Mode())))
			}
			if !stale(cfg.Listen, t) {
				return nil, fmt.Errorf("Config.Listen %s: already exists and is in use; remove it or choose another path", cfg.Listen)
			}
		}
		if dir := filepath.Dir(cfg.Listen); dir != "" {
			if err := checkFolder("Config.Listen", cfg.Listen); err != nil {
				return nil, err
			}
			// Checked here, before anything (the capture file) is touched.
			if unix.Access(dir, unix.W_OK) != nil {
				return nil, fmt.Errorf("Config.Listen %s: cannot create the proxy socket: no write permission on folder %s; choose another path", cfg.Listen, dir)
			}
		}
	}
	return p, nil
}

// Steps describes what running the plan does, one action per line.
func (p *Plan) Steps() []string {
	var steps []string
	owner := ""
	if p.HasOwner && !isAbstract(p.Listen) { // an abstract socket has no file to chmod
		owner = fmt.Sprintf(" with mode %04o, owner %d:%d", p.Mode, p.UID, p.GID)
	}
	if p.Swap {
		steps = append(steps,
			fmt.Sprintf("link %s to %s (the original %s socket stays reachable there)", p.Socket, p.Aside, p.Type),
			fmt.Sprintf("listen at %s%s, replacing it atomically", p.Socket, owner),
			fmt.Sprintf("forward every client to %s and record the traffic", p.Aside),
			fmt.Sprintf("on exit (SIGINT, SIGTERM, SIGHUP) move %s back to %s", p.Aside, p.Socket))
		return steps
	}
	if owner != "" && p.Mode != p.SocketMode {
		owner += fmt.Sprintf(" (%s has mode %04o; its folders keep out the users the proxy's mode leaves out)", p.Socket, p.SocketMode)
	}
	steps = append(steps,
		fmt.Sprintf("listen at %s%s", p.Listen, owner),
		fmt.Sprintf("forward every client to %s (%s) and record the traffic", p.Target, p.Type))
	if !isAbstract(p.Listen) {
		steps = append(steps, fmt.Sprintf("on exit remove %s", p.Listen))
	}
	return steps
}

func isAbstract(name string) bool { return strings.HasPrefix(name, "@") }

// checkFolder checks that the folder of path, the input named input, is
// one the proxy may make or move its socket in: there, a folder, and not
// reached through a symbolic link that another user may change (see
// sockfile.OpenDir, which the proxy opens it with).
func checkFolder(input, path string) error {
	dir, err := sockfile.OpenDir(filepath.Dir(path))
	var folderErr *sockfile.FolderError
	switch {
	case errors.As(err, &folderErr):
		return inputerr.New(input, path, folderErr.Problem)
	case err != nil:
		return fmt.Errorf("%s %s: %w", input, path, err)
	}
	return dir.Close()
}

// reachers reports whether the members of the socket's group gid (group)
// and all other users (other) may pass every folder on the way to the
// socket at path, as named and once its links are resolved: connect(2)
// needs search permission on each. A socket of mode 0666 in a folder of
// mode 0700 (/run/user/UID/bus) is its folder owner's alone. The answer
// errs on the side of "no": a group member who passes a folder of
// another group, or thanks to an ACL, is not seen; a folder that cannot
// be looked at lets nobody through.
func reachers(path string, gid uint32) (group, other bool) {
	group, other = true, true
	paths := []string{path}
	if real, err := filepath.EvalSymlinks(path); err == nil {
		paths = append(paths, real)
	}
	for _, p := range paths {
		abs, err := filepath.Abs(p)
		if err != nil {
			return false, false
		}
		for dir := filepath.Dir(abs); ; dir = filepath.Dir(dir) {
			var st unix.Stat_t
			if err := unix.Stat(dir, &st); err != nil {
				return false, false
			}
			if st.Mode&0o001 == 0 {
				other = false
				if st.Gid != gid || st.Mode&0o010 == 0 {
					group = false
				}
			}
			if dir == "/" || dir == "." {
				break
			}
		}
	}
	return group, other
}

func unwrapPathError(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

func describeMode(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "folder"
	case m.IsRegular():
		return "regular file"
	case m&fs.ModeSymlink != 0:
		return "symbolic link"
	case m&fs.ModeNamedPipe != 0:
		return "named pipe"
	case m&fs.ModeDevice != 0:
		return "device"
	}
	return m.Type().String()
}

func sameFile(a, b string) bool {
	sa, errA := os.Stat(a)
	sb, errB := os.Stat(b)
	return errA == nil && errB == nil && os.SameFile(sa, sb)
}

// stale reports whether nobody listens on the socket at path. A file path
// is probed through its folder's descriptor, which also works for names
// longer than a socket address (PATH.opsctl-orig of a long PATH).
func stale(path string, t SocketType) bool {
	if !isAbstract(path) {
		served, err := sockfile.Served(path, int(t))
		return err == nil && !served
	}
	c, err := net.Dial(t.network(), path)
	if err == nil {
		c.Close()
		return false
	}
	return errors.Is(err, syscall.ECONNREFUSED)
}

// detectType reads the socket's type from /proc/net/unix, and when it is
// not listed there (another network namespace), tries connecting with each
// type: a wrong type fails with EPROTOTYPE.
func detectType(name string) (SocketType, error) {
	if t, ok := procSocketType(name); ok {
		return t, nil
	}
	var lastErr error
	for _, t := range []SocketType{Stream, SeqPacket, Datagram} {
		c, err := net.Dial(t.network(), name)
		if err == nil {
			c.Close()
			return t, nil
		}
		lastErr = err
		if !errors.Is(err, syscall.EPROTOTYPE) {
			break
		}
	}
	return 0, fmt.Errorf("Config.Socket %s: cannot connect: %w", name, unwrapOpError(lastErr))
}

func unwrapOpError(err error) error {
	var oe *net.OpError
	if errors.As(err, &oe) {
		var se *os.SyscallError
		if errors.As(oe.Err, &se) {
			return se.Err
		}
		return oe.Err
	}
	return err
}

func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789@%+=:,./-_") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
