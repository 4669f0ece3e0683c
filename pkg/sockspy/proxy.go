package sockspy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
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
	ln, bound, err := p.listen()
	p.bound = bound
	p.bindMu.Unlock()
	if err != nil {
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
	return errors.Join(serveErr, restoreErr)
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
	path string
	info fs.FileInfo
}

// listen creates the proxy's socket: at the --listen address, or in swap
// mode at a temporary name that then replaces the original atomically
// while a hard link keeps the original reachable at Plan.Aside.
func (p *Proxy) listen() (io.Closer, *boundFile, error) {
	plan := p.Plan
	path := plan.Listen
	if plan.Swap {
		path = plan.Socket + ".opsctl-new"
		if err := os.Link(plan.Socket, plan.Aside); err != nil {
			return nil, nil, fmt.Errorf("--swap: keeping %s at %s: %w", plan.Socket, plan.Aside, unwrapLinkError(err))
		}
	}
	if !isAbstract(path) {
		if st, err := os.Lstat(path); err == nil && st.Mode()&fs.ModeSocket != 0 {
			os.Remove(path) // a stale socket (NewPlan checked that nobody listens)
		}
	}
	ln, err := listenUnix(plan.Type, path, plan.HasOwner)
	if err != nil {
		p.undoLink()
		return nil, nil, fmt.Errorf("listening at %s: %w", path, unwrapOpError(err))
	}
	if isAbstract(path) {
		return ln, nil, nil
	}
	if plan.HasOwner {
		if err := os.Chmod(path, plan.Mode); err != nil {
			p.logger().Warn("cannot copy the socket's mode", "path", path, "err", unwrapPathError(err))
		}
		if err := os.Lchown(path, plan.UID, plan.GID); err != nil {
			p.logger().Warn("cannot copy the socket's owner", "path", path, "uid", plan.UID, "gid", plan.GID, "err", unwrapPathError(err))
		}
	}
	st, err := os.Lstat(path)
	if err != nil {
		ln.Close()
		os.Remove(path)
		p.undoLink()
		return nil, nil, fmt.Errorf("listening at %s: %w", path, unwrapPathError(err))
	}
	if plan.Swap {
		if err := os.Rename(path, plan.Socket); err != nil {
			ln.Close()
			os.Remove(path)
			p.undoLink()
			return nil, nil, fmt.Errorf("--swap: serving at %s: %w", plan.Socket, unwrapLinkError(err))
		}
		path = plan.Socket
	}
	return ln, &boundFile{path: path, info: st}, nil
}

func unwrapLinkError(err error) error {
	var le *os.LinkError
	if errors.As(err, &le) {
		return le.Err
	}
	return unwrapPathError(err)
}

func (p *Proxy) undoLink() {
	if p.Plan.Swap {
		os.Remove(p.Plan.Aside)
	}
}

// unbind removes the proxy's socket file, or in swap mode moves the
// original back over it. Only a file that is still the proxy's is touched:
// a server that re-created its socket meanwhile keeps it.
func (p *Proxy) unbind(b *boundFile) error {
	if b == nil {
		return nil
	}
	st, err := os.Lstat(b.path)
	ours := err == nil && os.SameFile(st, b.info)
	plan := p.Plan
	if !plan.Swap {
		if ours {
			os.Remove(b.path)
		}
		return nil
	}
	if !ours {
		return fmt.Errorf("--swap: %s was replaced during the capture; the original socket was left at %s", plan.Socket, plan.Aside)
	}
	if err := os.Rename(plan.Aside, plan.Socket); err != nil {
		return fmt.Errorf("--swap: moving %s back to %s: %w (restore it with: mv -f %s %s)",
			plan.Aside, plan.Socket, unwrapLinkError(err), shellQuote(plan.Aside), shellQuote(plan.Socket))
	}
	p.logger().Info("socket restored", "path", plan.Socket)
	return nil
}

// listenUnix binds a socket of type t at name without unlinking it on
// close: the proxy decides what happens to the file. With private the file
// is created without permissions (fchmod before bind(2)), so that nobody
// can connect before the caller gives it the original socket's mode.
//
// A datagram socket gets SO_PASSCRED before bind(2) as well: a datagram
// queued before it is set carries no credentials (pid 0, uid 65534), and
// its sender would be taken for another client.
func listenUnix(t SocketType, name string, private bool) (io.Closer, error) {
	var lc net.ListenConfig
	if private || t == Datagram {
		lc.Control = func(_, _ string, c syscall.RawConn) error {
			var err error
			cerr := c.Control(func(fd uintptr) {
				if t == Datagram {
					err = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PASSCRED, 1)
				}
				if err == nil && private {
					err = unix.Fchmod(int(fd), 0)
				}
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
	ln, err := lc.Listen(context.Background(), t.network(), name)
	if err != nil {
		return nil, err
	}
	ul := ln.(*net.UnixListener)
	ul.SetUnlinkOnClose(false)
	return ul, nil
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
