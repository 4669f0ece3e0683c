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
	// ReadTimeout bounds the time a client takes to send its request line
	// (default 10s); WriteTimeout the time to take the reply (default 5s).
	ReadTimeout  time.Duration
	WriteTimeout time.Duration
	// ShutdownGrace is how long Serve lets requests being answered finish
	// after its context ends (default 15s); those still running then get
	// "defer".
	ShutdownGrace time.Duration
	// Cache, when set, answers repeated successful logins without IMAP.
	Cache *Cache
	// Metrics, when set, counts every answer.
	Metrics *Metrics
	// Logger receives one line per answer other than yes; nil discards.
	Logger *slog.Logger

	initOnce sync.Once
	slots    chan struct{}
	waiting  atomic.Int64
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
		if s.Logger == nil {
			s.Logger = slog.New(slog.DiscardHandler)
		}
		if len(s.AllowUIDs) == 0 {
			s.AllowUIDs = []uint32{0, uint32(os.Getuid())}
		}
		s.slots = make(chan struct{}, s.MaxConcurrent)
	})
}

// Serve answers connections on ln, a UNIX stream socket listener (a client
// on any other kind of connection is refused: its uid cannot be checked),
// until ctx ends, then stops accepting,
// lets the requests being answered finish (up to ShutdownGrace), closes ln
// and returns nil. It returns an error only when accepting fails.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	s.init()
	// Requests already being answered outlive ctx by the grace period.
	work, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()
	stopAccepting := context.AfterFunc(ctx, func() { ln.Close() })
	defer stopAccepting()

	var handlers sync.WaitGroup
	var acceptErr error
	for {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			var netErr net.Error
			if errors.As(err, &netErr) && netErr.Timeout() || errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
				s.Logger.Warn("accept failed, retrying", "err", err)
				time.Sleep(100 * time.Millisecond)
				continue
			}
			acceptErr = fmt.Errorf("accept on %s: %w", ln.Addr(), err)
			break
		}
		handlers.Add(1)
		go func() {
			defer handlers.Done()
			s.handle(work, conn)
		}()
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

func (s *Server) handle(ctx context.Context, conn net.Conn) {
	defer conn.Close()
	// Only a UNIX socket says who the client is; on any other connection the
	// allow-list cannot be applied, so it is refused rather than trusted.
	uc, ok := conn.(*net.UnixConn)
	if !ok {
		s.Logger.Warn("refused a client: not on a UNIX socket, its uid cannot be checked", "network", conn.LocalAddr().Network())
		s.refuse(conn)
		return
	}
	client, err := peerOf(uc)
	if err != nil {
		s.Logger.Warn("refused a client whose uid is unknown", "err", err)
		s.refuse(conn)
		return
	}
	if !slices.Contains(s.AllowUIDs, client.uid) {
		s.Logger.Warn("refused a client: uid not allowed (see --allow-uid)", "uid", client.uid, "pid", client.pid)
		s.refuse(conn)
		return
	}

	conn.SetReadDeadline(time.Now().Add(s.ReadTimeout))
	reader := bufio.NewReaderSize(conn, MaxRequestLine)
	line, readErr := reader.ReadSlice('\n')
	var verdict Verdict
	switch {
	case readErr == nil:
		verdict = s.answerLine(ctx, line)
	case errors.Is(readErr, bufio.ErrBufferFull):
		s.malformed(fmt.Errorf("request longer than %d bytes", MaxRequestLine))
	case errors.Is(readErr, io.EOF):
		if len(line) == 0 {
			return // a connection opened and closed: nothing to answer
		}
		s.malformed(errors.New("request ended without a newline"))
	case errors.Is(readErr, os.ErrDeadlineExceeded):
		// Too slow: answer defer rather than nothing, which ${readsocket}
		// would hand to server_condition as an empty string (535).
		s.malformed(fmt.Errorf("no complete request within %s", s.ReadTimeout))
	default:
		s.Logger.Warn("reading request", "err", readErr)
		return // the client is gone: nobody to answer
	}

	if err := s.reply(conn, verdict, readErr != nil || reader.Buffered() > 0, 1<<20); err != nil {
		s.Logger.Warn("writing reply", "err", err)
	}
}

// reply writes verdict. With unread input left, it then ends our side and
// swallows up to drain bytes, briefly: closing with unread input would
// reset the connection and could cost the client the reply it has not
// read yet.
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

// refuse answers a client that may not ask with "defer", unread. No reply
// at all would reach ${readsocket} as an empty string, which Exim's
// server_condition takes as a failed authentication (535): a wrong
// --allow-uid would turn every login into "wrong password". "defer" is a
// temporary error and says nothing about any credentials.
func (s *Server) refuse(conn net.Conn) {
	s.Metrics.refusedClient()
	s.reply(conn, Defer, true, MaxRequestLine)
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
		return nil, fmt.Errorf("--socket %s: %w", path, err)
	}
	return ln, nil
}
