package imapauth

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/opsctl/opsctl/internal/inputerr"

	"github.com/opsctl/opsctl/internal/sockfile"
)

// LoginChecker answers whether user and password log in. *Checker is the
// real one; tests of the daemon pass others.
type LoginChecker interface {
	Check(ctx context.Context, user, password string) (Verdict, error)
}

// Server is the daemon behind Exim's ${readsocket}: on each connection it
// reads one request line (see ParseRequest), replies "yes", "no" or "defer"
// without a newline and closes the connection.
//
// The zero values of the tuning fields select the defaults documented on
// each field.
type Server struct {
	Checker LoginChecker
	// AllowUIDs are the client uids (SO_PEERCRED) that may ask. Empty means
	// root and the uid of this process.
	AllowUIDs []uint32
	// MaxConcurrent bounds the IMAP logins made at once (default 16).
	MaxConcurrent int
	// MaxQueue bounds the requests waiting for a login slot (default 256);
	// beyond it a request gets "defer" at once.
	MaxQueue int
	// QueueWait bounds the time a request waits for a login slot (default 10s).
	QueueWait time.Duration
	// MaxConnections bounds the connections of allowed clients open at
	// once, MaxConnectionsPerUID those of one uid; a connection beyond
	// either gets "defer" at once. Zero sizes them from the descriptor
	// limit (see ConnectionLimits).
	MaxConnections       int
	MaxConnectionsPerUID int
	// OtherDescriptors are the descriptors the process holds besides those
	// the Server counts (its clients and MaxConcurrent IMAP logins): the
	// checker's ready connections, a metrics server. The default caps
	// leave room for them.
	OtherDescriptors int
	// ReadTimeout bounds the time a client takes to send its request line
	// (default 10s); WriteTimeout the time to take the reply on a
	// connection that is not a UNIX socket (default 5s; on a UNIX socket
	// the reply is written without waiting).
	ReadTimeout  time.Duration
	WriteTimeout time.Duration
	// ShutdownGrace is how long Serve lets requests being answered finish
	// after its context ends (default 15s); those still running then get
	// "defer".
	ShutdownGrace time.Duration
	// RepeatLogInterval is how often at most an event that clients can
	// repeat at will (a refused uid, a connection over a cap, no
	// descriptor left) is logged: the first at once, the rest as one line
	// with their count per interval (default 1m).
	RepeatLogInterval time.Duration
	// Serving, when set, is called once Serve is ready to answer: its
	// connection limits (given) in force and its spare descriptor taken,
	// right before it accepts the first client. A daemon says "serving"
	// there: said earlier, a client (or a test) acting on it could find
	// Serve not yet set up.
	Serving func(ConnectionLimits)
	// Cache, when set, answers repeated successful logins without IMAP.
	Cache *Cache
	// Metrics, when set, counts every answer.
	Metrics *Metrics
	// Logger receives one line per answer other than yes; nil discards.
	Logger *slog.Logger

	initOnce sync.Once
	slots    chan struct{}
	waiting  atomic.Int64
	conns    connSlots
	events   serverEvents
}

// serverEvents are the log lines a client can provoke at will, each
// limited to a line per RepeatLogInterval (see burstLog).
type serverEvents struct {
	refused, unknownUID, notUnix    *burstLog
	overPerUID, overTotal, noFDLeft *burstLog
	acceptFailed                    *burstLog
}

func (e *serverEvents) close() {
	for _, l := range []*burstLog{e.refused, e.unknownUID, e.notUnix, e.overPerUID, e.overTotal, e.noFDLeft, e.acceptFailed} {
		l.close()
	}
}

func (s *Server) init() {
	s.initOnce.Do(func() {
		if s.MaxConcurrent <= 0 {
			s.MaxConcurrent = 16
		}
		if s.MaxQueue <= 0 {
			s.MaxQueue = 256
		}
		if s.QueueWait <= 0 {
			s.QueueWait = 10 * time.Second
		}
		if s.ReadTimeout <= 0 {
			s.ReadTimeout = 10 * time.Second
		}
		if s.WriteTimeout <= 0 {
			s.WriteTimeout = 5 * time.Second
		}
		if s.ShutdownGrace <= 0 {
			s.ShutdownGrace = 15 * time.Second
		}
		if s.RepeatLogInterval <= 0 {
			s.RepeatLogInterval = time.Minute
		}
		if s.Logger == nil {
			s.Logger = slog.New(slog.DiscardHandler)
		}
		if len(s.AllowUIDs) == 0 {
			s.AllowUIDs = []uint32{0, uint32(os.Getuid())}
		}
		s.slots = make(chan struct{}, s.MaxConcurrent)
		burst := func(level slog.Level, msg string) *burstLog {
			return newBurstLog(s.Logger, level, msg, s.RepeatLogInterval)
		}
		s.events = serverEvents{
			refused:      burst(slog.LevelWarn, "refused a client: uid not allowed (see --allow-uid)"),
			unknownUID:   burst(slog.LevelWarn, "refused a client whose uid is unknown"),
			notUnix:      burst(slog.LevelWarn, "refused a client: not on a UNIX socket, its uid cannot be checked"),
			overPerUID:   burst(slog.LevelWarn, "connection limit of one uid reached, answered defer (see --max-connections-per-uid)"),
			overTotal:    burst(slog.LevelWarn, "connection limit reached, answered defer (see --max-connections)"),
			noFDLeft:     burst(slog.LevelError, "out of file descriptors, answered defer (see LimitNOFILE=)"),
			acceptFailed: burst(slog.LevelWarn, "accept failed, retrying"),
		}
	})
}

// noUID stands for the uid of a client whose uid is not known: (uid_t)-1
// is no user's.
const noUID = ^uint32(0)

// Serve answers connections on ln, a UNIX stream socket listener (a client
// on any other kind of connection is refused: its uid cannot be checked),
// until ctx ends, then stops accepting,
// lets the requests being answered finish (up to ShutdownGrace), closes ln
// and returns nil. It returns an error when the connection limits cannot
// be kept (see ConnectionLimits) or accepting fails for good.
//
// A client that may not ask, or that would exceed a connection limit, is
// answered "defer" and closed in the accept loop itself: it costs a few
// system calls and at most one log line per RepeatLogInterval, so a flood
// of them neither fills the listen queue nor the log. Running out of
// descriptors is survived the same way (see spareDescriptor).
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	s.init()
	limits, err := s.ConnectionLimits()
	if err != nil {
		ln.Close()
		return err
	}
	s.conns.limits = limits
	s.Metrics.setLimits(limits)
	defer s.events.close()
	spare := openSpare()
	defer spare.release()
	// The accept loop's scratch buffer for the input of the clients it
	// turns away.
	drain := make([]byte, 16<<10)
	if s.Serving != nil {
		s.Serving(limits)
	}

	// Requests already being answered outlive ctx by the grace period.
	work, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()
	stopAccepting := context.AfterFunc(ctx, func() { ln.Close() })
	defer stopAccepting()

	var handlers sync.WaitGroup
	var acceptErr error
	var backoff time.Duration
	for {
		conn, err := ln.Accept()
		if err != nil && outOfDescriptors(err) {
			var turnedAway bool
			if conn, turnedAway, err = s.acceptOnSpare(ln, &spare, drain); turnedAway {
				continue
			}
		}
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			if !retryableAccept(err) {
				acceptErr = fmt.Errorf("accept on %s: %w", ln.Addr(), err)
				break
			}
			// Nothing to accept until something changes: wait a little
			// longer each time rather than spin.
			s.Metrics.acceptFailed()
			s.events.acceptFailed.note(noUID, "err", err)
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			select {
			case <-ctx.Done():
			case <-time.After(backoff):
			}
			continue
		}
		backoff = 0
		s.admit(work, conn, &handlers, drain)
	}
	ln.Close()

	done := make(chan struct{})
	go func() { handlers.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(s.ShutdownGrace):
		cancelWork()
		<-done
	}
	return acceptErr
}

func outOfDescriptors(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE)
}

// retryableAccept reports whether accepting may work again later: no
// descriptor or memory left, or a time-out.
func retryableAccept(err error) bool {
	var netErr net.Error
	return errors.As(err, &netErr) && netErr.Timeout() || outOfDescriptors(err) ||
		errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.ENOMEM)
}

// acceptOnSpare gives the spare descriptor back and accepts the client
// waiting (or the next to come). When the spare can then be opened again,
// descriptors are to be had again and the client is returned to be
// answered; otherwise it is turned away (turnedAway) and the spare taken
// again once the client is closed.
func (s *Server) acceptOnSpare(ln net.Listener, spare *spareDescriptor, drain []byte) (conn net.Conn, turnedAway bool, err error) {
	spare.retake() // lost when another goroutine took the descriptor freed last time
	if !spare.release() {
		return nil, false, syscall.EMFILE
	}
	conn, err = ln.Accept()
	spare.retake()
	if err != nil || spare.held() {
		return conn, false, err
	}
	s.Metrics.overLimit(limitDescriptors)
	s.turnAway(conn, s.events.noFDLeft, drain, noUID)
	spare.retake()
	return nil, true, nil
}

// admit checks who the client is and either answers it in a goroutine of
// its own, holding a connection slot, or turns it away at once.
func (s *Server) admit(ctx context.Context, conn net.Conn, handlers *sync.WaitGroup, drain []byte) {
	uc, ok := conn.(*net.UnixConn)
	if !ok {
		// Only a UNIX socket says who the client is; on any other
		// connection the allow-list cannot be applied, so it is refused
		// rather than trusted. Only tests listen on anything else: such a
		// client is refused in a goroutine (a TCP close with unread input
		// resets the connection), within the total cap.
		s.Metrics.refusedClient()
		s.events.notUnix.note(noUID, "network", conn.LocalAddr().Network())
		if s.conns.take(noUID) != limitNone {
			conn.Close()
			return
		}
		handlers.Add(1)
		go func() {
			defer handlers.Done()
			defer s.conns.give(noUID)
			defer conn.Close()
			s.reply(conn, Defer, true, MaxRequestLine)
		}()
		return
	}
	client, err := peerOf(uc)
	if err != nil {
		s.Metrics.refusedClient()
		s.turnAway(uc, s.events.unknownUID, drain, noUID, "err", err)
		return
	}
	if !slices.Contains(s.AllowUIDs, client.uid) {
		s.Metrics.refusedClient()
		s.turnAway(uc, s.events.refused, drain, client.uid, "uid", client.uid, "pid", client.pid)
		return
	}
	switch s.conns.take(client.uid) {
	case limitPerUID:
		s.Metrics.overLimit(limitPerUID)
		s.turnAway(uc, s.events.overPerUID, drain, client.uid, "uid", client.uid, "pid", client.pid, "limit", s.conns.limits.PerUID)
		return
	case limitTotal:
		s.Metrics.overLimit(limitTotal)
		s.turnAway(uc, s.events.overTotal, drain, client.uid, "uid", client.uid, "pid", client.pid, "limit", s.conns.limits.Total)
		return
	}
	s.Metrics.addOpen(1)
	handlers.Add(1)
	go func() {
		defer handlers.Done()
		defer s.Metrics.addOpen(-1)
		defer s.conns.give(client.uid)
		s.handle(ctx, uc)
	}()
}

// turnAway answers "defer" and closes conn, a client of uid, at once; event
// logs it (attrs, when it gets a line of its own).
// "defer" rather than nothing: no reply at all would reach ${readsocket}
// as an empty string, which Exim's server_condition takes as a failed
// authentication (535), so a wrong AllowUIDs or a full daemon would turn
// every login into "wrong password". "defer" is a temporary error (435)
// and says nothing about any credentials.
func (s *Server) turnAway(conn net.Conn, event *burstLog, drain []byte, uid uint32, attrs ...any) {
	event.note(uid, attrs...)
	if uc, ok := conn.(*net.UnixConn); ok {
		hangUp(uc, Defer.String(), drain)
		return
	}
	conn.Close()
}

// handle answers the one request of an allowed client.
func (s *Server) handle(ctx context.Context, conn *net.UnixConn) {
	conn.SetReadDeadline(time.Now().Add(s.ReadTimeout))
	reader := bufio.NewReaderSize(conn, MaxRequestLine)
	line, readErr := reader.ReadSlice('\n')
	verdict := Defer
	switch {
	case readErr == nil:
		verdict = s.answerLine(ctx, line)
	case errors.Is(readErr, bufio.ErrBufferFull):
		s.malformed(fmt.Errorf("request longer than %d bytes", MaxRequestLine))
	case errors.Is(readErr, io.EOF):
		if len(line) == 0 {
			conn.Close() // a connection opened and closed: nothing to answer
			return
		}
		s.malformed(errors.New("request ended without a newline"))
	case errors.Is(readErr, os.ErrDeadlineExceeded):
		// Too slow: answer defer rather than nothing, which ${readsocket}
		// would hand to server_condition as an empty string (535).
		s.malformed(fmt.Errorf("no complete request within %s", s.ReadTimeout))
	default:
		s.Logger.Warn("reading request", "err", readErr)
		conn.Close() // the client is gone: nobody to answer
		return
	}
	if err := hangUp(conn, verdict.String(), make([]byte, 4096)); err != nil {
		s.Logger.Warn("writing reply", "err", err)
	}
}

// reply writes verdict on a connection that is not a UNIX socket. With
// unread input left, it then ends our side and swallows up to drain bytes,
// briefly: closing with unread input would reset the connection and could
// cost the client the reply it has not read yet.
func (s *Server) reply(conn net.Conn, verdict Verdict, unread bool, drain int64) error {
	conn.SetWriteDeadline(time.Now().Add(s.WriteTimeout))
	if _, err := io.WriteString(conn, verdict.String()); err != nil {
		return err
	}
	if unread {
		if halfCloser, ok := conn.(interface{ CloseWrite() error }); ok {
			halfCloser.CloseWrite()
		}
		conn.SetReadDeadline(time.Now().Add(time.Second))
		io.Copy(io.Discard, io.LimitReader(conn, drain))
	}
	return nil
}

func (s *Server) malformed(err error) {
	s.Metrics.malformedRequest()
	s.Metrics.observe(Defer, "local", 0)
	s.Logger.Warn("malformed request, answered defer", "err", err)
}

func (s *Server) answerLine(ctx context.Context, line []byte) Verdict {
	user, password, err := ParseRequest(line)
	clear(line) // the password's bytes leave memory with this request
	if err != nil {
		s.malformed(err)
		return Defer
	}
	return s.Answer(ctx, user, password)
}

// Answer checks one login with the cache, the queue bound and the
// checker, and records it in the metrics and the log.
func (s *Server) Answer(ctx context.Context, user, password string) Verdict {
	s.init()
	start := time.Now()
	if s.Cache != nil && s.Cache.Hit(user, password) {
		s.Metrics.observe(Yes, "cache", time.Since(start))
		s.Logger.Debug("login accepted from cache", "user", user)
		return Yes
	}

	var generation uint64
	if s.Cache != nil {
		generation = s.Cache.Generation(user)
	}
	verdict, err := s.checkQueued(ctx, user, password)
	switch verdict {
	case Yes:
		if s.Cache != nil {
			s.Cache.Remember(user, password, generation)
		}
		s.Logger.Debug("login accepted", "user", user, "took", time.Since(start))
	case No:
		if s.Cache != nil {
			s.Cache.Forget(user)
		}
		s.Logger.Info("login rejected", "user", user, "reason", err)
	default:
		if notPinned := (*PinMismatchError)(nil); errors.As(err, &notPinned) {
			s.Metrics.pinMismatch()
		}
		s.Logger.Warn("login deferred", "user", user, "reason", err)
	}
	s.Metrics.observe(verdict, "imap", time.Since(start))
	return verdict
}

func (s *Server) checkQueued(ctx context.Context, user, password string) (Verdict, error) {
	if s.waiting.Add(1) > int64(s.MaxQueue) {
		s.waiting.Add(-1)
		return Defer, fmt.Errorf("queue full: %d requests already wait for one of %d login slots", s.MaxQueue, s.MaxConcurrent)
	}
	s.Metrics.addQueued(1)
	timer := time.NewTimer(s.QueueWait)
	defer timer.Stop()
	var gotSlot bool
	select {
	case s.slots <- struct{}{}:
		gotSlot = true
	case <-timer.C:
	case <-ctx.Done():
	}
	s.waiting.Add(-1)
	s.Metrics.addQueued(-1)
	if !gotSlot {
		if ctx.Err() != nil {
			return Defer, fmt.Errorf("shutting down: %w", ctx.Err())
		}
		return Defer, fmt.Errorf("no login slot free within %s (%d in use)", s.QueueWait, s.MaxConcurrent)
	}
	defer func() { <-s.slots }()
	s.Metrics.addInFlight(1)
	defer s.Metrics.addInFlight(-1)
	return s.Checker.Check(ctx, user, password)
}

// ListenUnix creates the UNIX stream socket at path with the given mode. A
// stale socket left by a crashed daemon is replaced; a socket another
// process still serves, or any other file, is an error. The socket file is
// removed when the listener is closed.
//
// The daemon runs as root and path may be in a folder another user can
// write to: the socket is made in a private folder, given its mode there
// and moved into place, never reached through a name that user could have
// swapped for a link (see internal/sockfile). Errors wrap the errors of
// sockfile: ErrTooLong, ErrNoFolder and ErrNotSocket are about the path
// as given.
func ListenUnix(path string, mode os.FileMode) (net.Listener, error) {
	ln, err := sockfile.Listen(path, mode)
	if err != nil {
		return nil, &inputerr.Error{Name: "ListenUnix.path", Value: path, Problem: err.Error(), Err: err}
	}
	return ln, nil
}
