package sockspy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/opsctl/opsctl/internal/sockfile"
)

// Proxy serves clients at the plan's listening address, forwards them to
// the captured socket, and records what passes in a Capture and/or a
// Hexdump.
type Proxy struct {
	Plan    *Plan
	Capture *Capture // nil: no capture file
	Hexdump *Hexdump // nil: no hexdump
	// Port is the server port of the synthetic TCP/UDP connections; the
	// port decides which Wireshark dissector applies. 0 means 80.
	Port   uint16
	Logger *slog.Logger
	// Copy makes every byte pass through user space instead of being
	// spliced: for comparison in benchmarks.
	Copy bool
	// Ready, when set, is called once clients are accepted.
	Ready func()

	ports  atomic.Uint32
	connID atomic.Int64
	wg     sync.WaitGroup
	mu     sync.Mutex
	open   map[io.Closer]struct{}

	now func() time.Time // the clock; nil means time.Now (a seam for tests)

	// checked is the socket file of Plan.Socket that NewPlan checked, held
	// open in listen mode: clients are connected to it, never to whatever
	// its name leads to later (set by Run before any goroutine starts).
	checked *os.File

	// bindMu orders binding against Restore from another goroutine: once
	// restored, Run binds nothing any more.
	bindMu      sync.Mutex
	bound       *boundFile // set by Run before any goroutine starts
	restored    bool
	restoreOnce sync.Once
	restoreErr  error
}

// firstClientPort is where the synthetic client ports start; they wrap
// around below 65536.
const firstClientPort = 40000

func (p *Proxy) serverPort() uint16 {
	if p.Port == 0 {
		return 80
	}
	return p.Port
}

// clientPort hands each connection (or datagram client) a port of its own.
func (p *Proxy) clientPort() uint16 {
	for {
		n := p.ports.Add(1) - 1
		port := uint16(firstClientPort + n%(65536-firstClientPort))
		if port != p.serverPort() {
			return port
		}
	}
}

func (p *Proxy) clock() time.Time {
	if p.now == nil {
		return time.Now()
	}
	return p.now()
}

func (p *Proxy) logger() *slog.Logger {
	if p.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return p.Logger
}

// track registers c to be closed when the proxy stops; it reports false
// when the proxy is stopping already.
func (p *Proxy) track(c io.Closer) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.open == nil {
		return false
	}
	p.open[c] = struct{}{}
	return true
}

// stopping reports whether Run is closing the connections.
func (p *Proxy) stopping() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.open == nil
}

func (p *Proxy) untrack(c io.Closer) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.open, c)
}

// Run serves until ctx is done or the capture fails, then puts the socket
// back (swap), stops every connection (recording a reset for those still
// open) and returns. A panic on any of its goroutines puts the socket back
// before it ends the process. The caller closes the Capture afterwards,
// which writes whatever is still queued. A Proxy runs once.
func (p *Proxy) Run(ctx context.Context) error {
	p.mu.Lock()
	p.open = map[io.Closer]struct{}{}
	p.mu.Unlock()
	p.bindMu.Lock()
	if p.restored {
		p.bindMu.Unlock()
		return errors.New("stopped before it started")
	}
	checked, err := p.checkedSocket()
	if err != nil {
		p.bindMu.Unlock()
		return err
	}
	p.checked = checked
	ln, bound, err := p.listen()
	p.bound = bound
	p.bindMu.Unlock()
	if err != nil {
		if checked != nil {
			checked.Close()
		}
		return err
	}
	defer p.restoreOnPanic()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if p.Capture != nil {
		go func() {
			select {
			case <-p.Capture.Failed():
				cancel()
			case <-ctx.Done():
			}
		}()
	}
	if p.Ready != nil {
		p.Ready()
	}
	served := make(chan error, 1)
	go func() {
		defer p.restoreOnPanic()
		if p.Plan.Type == Datagram {
			served <- p.serveDatagrams(ctx, ln.(*net.UnixConn))
		} else {
			served <- p.serveConns(ctx, ln.(*net.UnixListener))
		}
	}()
	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-served:
	}
	restoreErr := p.restore()
	ln.Close()
	if serveErr == nil {
		serveErr = <-served
	}
	p.mu.Lock()
	for c := range p.open {
		c.Close()
	}
	p.open = nil
	p.mu.Unlock()
	p.wg.Wait()
	if p.bound != nil {
		p.bound.close()
	}
	if p.checked != nil {
		p.checked.Close()
	}
	return errors.Join(serveErr, restoreErr)
}

// checkedSocket opens (O_PATH) the socket file of Plan.Socket in listen
// mode, when it is still the file NewPlan checked; nil for an abstract
// socket, and in swap mode, where listen holds the original open.
//
// opsctl runs as root and connects every client to the socket: connected
// by its path, the owner of a folder on that path could rename a link to
// a socket only root may use (/run/docker.sock) over it, and reach that
// socket through the proxy, which has the mode of their own. So clients
// are connected to this descriptor (ProcPath), whatever the name leads to
// since; like --swap, a server that makes its socket anew during the
// capture is not followed.
func (p *Proxy) checkedSocket() (*os.File, error) {
	plan := p.Plan
	if plan.Swap || isAbstract(plan.Socket) || !plan.HasOwner {
		return nil, nil
	}
	// The path as NewPlan followed it (a link to the socket is fine in
	// listen mode); the file it leads to must be the one checked.
	fd, err := unix.Open(plan.Socket, unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("Config.Socket %s: %w", plan.Socket, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || (sockfile.ID{Dev: st.Dev, Ino: st.Ino}) != plan.socketID {
		unix.Close(fd)
		return nil, fmt.Errorf("Config.Socket %s changed since it was checked; nothing was done", plan.Socket)
	}
	return os.NewFile(uintptr(fd), plan.Socket), nil
}

// Restore puts the original socket back (swap) or removes the proxy's
// (listen), once: Run does it when it stops; a caller that cannot wait for
// Run to return may do it itself. Safe to call from any goroutine.
func (p *Proxy) Restore() error { return p.restore() }

// restore puts the original socket back (swap) or removes the proxy's
// (listen), once.
func (p *Proxy) restore() error {
	p.bindMu.Lock()
	defer p.bindMu.Unlock()
	p.restored = true
	p.restoreOnce.Do(func() { p.restoreErr = p.unbind(p.bound) })
	return p.restoreErr
}

// restoreOnPanic is deferred by every goroutine of a running proxy. A panic
// ends the process without running the other goroutines' defers, which
// would leave a swapped socket moved aside: put it back, then crash.
func (p *Proxy) restoreOnPanic() {
	if r := recover(); r != nil {
		p.restore()
		panic(r)
	}
}

// boundFile is the socket file the proxy created, to be removed or
// replaced by the original on exit only while it is still the proxy's.
type boundFile struct {
	dir  *sockfile.Dir // the folder of the socket, opened once
	name string        // the proxy's socket in dir
	id   sockfile.ID   // the proxy's socket file
	// swap: the original socket, kept at aside meanwhile, and open so that
	// the proxy connects to it, whatever happens to its names.
	aside    string
	original *os.File
}

// target is where the proxy connects its clients: the socket file that
// was checked, through its descriptor (in swap mode the original, whose
// moved-aside name of a long PATH is too long for a socket address; in
// listen mode the file of checkedSocket), else Plan.Target (an abstract
// socket, which has no file).
func (p *Proxy) target() string {
	if p.bound != nil && p.bound.original != nil {
		return sockfile.ProcPath(p.bound.original)
	}
	if p.checked != nil {
		return sockfile.ProcPath(p.checked)
	}
	return p.Plan.Target
}

// listen creates the proxy's socket: at Plan.Listen, or in swap
// mode in place of the original, atomically, while a hard link keeps the
// original reachable at Plan.Aside. opsctl runs as root in folders other
// users may own: every step goes through internal/sockfile, which never
// follows a name such a user could have swapped for a link.
func (p *Proxy) listen() (io.Closer, *boundFile, error) {
	plan := p.Plan
	if isAbstract(plan.Listen) {
		ln, err := listenUnix(plan.Type, plan.Listen)
		if err != nil {
			return nil, nil, fmt.Errorf("listening at %s: %w", plan.Listen, unwrapOpError(err))
		}
		return ln, nil, nil
	}
	dir, err := sockfile.OpenDir(filepath.Dir(plan.Listen))
	if err != nil {
		return nil, nil, fmt.Errorf("listening at %s: %w", plan.Listen, err)
	}
	b := &boundFile{dir: dir, name: filepath.Base(plan.Listen)}
	opts := sockfile.Options{Type: int(plan.Type), ReplaceStale: true, Mode: 0o600}
	if plan.Type == Datagram {
		// A datagram queued before SO_PASSCRED is set carries no
		// credentials (pid 0, uid 65534), and its sender would be taken
		// for another client.
		opts.Control = func(fd int) error { return unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PASSCRED, 1) }
	}
	if plan.HasOwner {
		opts.Mode = plan.Mode
		opts.Owner = &sockfile.Owner{UID: plan.UID, GID: plan.GID}
		opts.OwnerFailed = func(err error) error {
			p.logger().Warn("cannot copy the socket's owner", "path", plan.Listen, "uid", plan.UID, "gid", plan.GID, "err", err)
			return nil
		}
	}
	if plan.Swap {
		// The file NewPlan checked, under both names, and open.
		b.aside = filepath.Base(plan.Aside)
		if b.original, err = dir.Open(b.name, plan.socketID); err != nil {
			dir.Close()
			return nil, nil, fmt.Errorf("Config.Swap: %s changed since it was checked; nothing was done", plan.Socket)
		}
		if err := dir.Link(b.name, b.aside, plan.socketID); err != nil {
			b.close()
			return nil, nil, fmt.Errorf("Config.Swap: keeping %s at %s: %w", plan.Socket, plan.Aside, unwrapLinkError(err))
		}
		opts.Replace = &plan.socketID
	}
	sock, err := dir.Bind(b.name, opts)
	if err != nil {
		if plan.Swap {
			dir.RemoveIf(b.aside, plan.socketID)
		}
		b.close()
		if plan.Swap {
			return nil, nil, fmt.Errorf("Config.Swap: serving at %s: %w", plan.Socket, err)
		}
		return nil, nil, fmt.Errorf("listening at %s: %w", plan.Listen, err)
	}
	b.id = sock.Info.ID
	var ln io.Closer
	if plan.Type == Datagram {
		ln, err = sock.PacketConn()
	} else {
		ln, err = sock.Listener()
	}
	if err != nil {
		p.unbind(b)
		sock.File.Close()
		b.close()
		return nil, nil, fmt.Errorf("listening at %s: %w", plan.Listen, err)
	}
	return ln, b, nil
}

// close releases the folder and the original socket's descriptor.
func (b *boundFile) close() {
	if b.original != nil {
		b.original.Close()
	}
	b.dir.Close()
}

func unwrapLinkError(err error) error {
	var le *os.LinkError
	if errors.As(err, &le) {
		return le.Err
	}
	return unwrapPathError(err)
}

// unbind removes the proxy's socket file, or in swap mode moves the
// original back over it. Only a file that is still the proxy's is touched:
// a server that re-created its socket meanwhile keeps it.
func (p *Proxy) unbind(b *boundFile) error {
	if b == nil {
		return nil
	}
	plan := p.Plan
	if !plan.Swap {
		if _, err := b.dir.RemoveIf(b.name, b.id); err != nil {
			return fmt.Errorf("removing %s: %w", plan.Listen, err)
		}
		return nil
	}
	err := b.dir.PutBack(b.aside, plan.socketID, b.name, b.id)
	if errors.Is(err, sockfile.ErrChanged) {
		return fmt.Errorf("Config.Swap: %s was replaced during the capture; the original socket was left at %s", plan.Socket, plan.Aside)
	}
	if err != nil {
		return fmt.Errorf("Config.Swap: moving %s back to %s: %w (restore it with: mv -f %s %s)",
			plan.Aside, plan.Socket, err, shellQuote(plan.Aside), shellQuote(plan.Socket))
	}
	p.logger().Info("socket restored", "path", plan.Socket)
	return nil
}

// listenUnix binds a socket of type t at an abstract name, which has no
// file to give a mode or owner.
//
// A datagram socket gets SO_PASSCRED before bind(2): a datagram queued
// before it is set carries no credentials (pid 0, uid 65534), and its
// sender would be taken for another client.
func listenUnix(t SocketType, name string) (io.Closer, error) {
	var lc net.ListenConfig
	if t == Datagram {
		lc.Control = func(_, _ string, c syscall.RawConn) error {
			var err error
			cerr := c.Control(func(fd uintptr) {
				err = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PASSCRED, 1)
			})
			if cerr != nil {
				return cerr
			}
			return err
		}
	}
	if t == Datagram {
		return lc.ListenPacket(context.Background(), t.network(), name)
	}
	return lc.Listen(context.Background(), t.network(), name)
}

// serveConns accepts stream or seqpacket clients until ln is closed.
func (p *Proxy) serveConns(ctx context.Context, ln *net.UnixListener) error {
	for {
		c, err := ln.AcceptUnix()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			if errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
				p.logger().Warn("accept: out of file descriptors; retrying", "err", err)
				time.Sleep(100 * time.Millisecond)
				continue
			}
			return fmt.Errorf("accepting at %s: %w", p.Plan.Listen, unwrapOpError(err))
		}
		if !p.track(c) {
			c.Close()
			return nil
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			defer p.restoreOnPanic()
			defer p.untrack(c)
			defer c.Close()
			p.serveConn(c)
		}()
	}
}
