package imapauth

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opsctl/opsctl/internal/inputerr"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// Checker checks user names and passwords by logging in to one IMAP server.
// It is safe for concurrent use; its connections share one TLS session
// cache, so later connections resume the TLS session. With Config.Warm it
// keeps connections ready (TLS up, greeting read, capabilities checked) so
// that a check costs one LOGIN round trip; the LOGOUT after a check always
// runs after the answer is returned. Close waits for that.
type Checker struct {
	addr    string
	mode    TLSMode
	tls     *tls.Config
	timeout time.Duration
	dialer  net.Dialer
	pool    *warmPool // nil without Config.Warm

	// pins are the pins in force, Config.Pins and those of pinFile;
	// ReloadPins replaces them.
	pins     atomic.Pointer[pinSet]
	reload   sync.Mutex // one ReloadPins at a time
	flagPins []Pin      // Config.Pins, kept by every reload
	pinFile  string

	background sync.WaitGroup // logouts and warm-ups under way
}

// NewChecker validates cfg and loads its CA file and pin file. Its errors
// are configuration errors: they name the input at fault (Config.Server,
// a *CAFileError, a *PinFileError...).
func NewChecker(cfg Config) (*Checker, error) {
	host, addr, err := splitServer(cfg.Server, cfg.TLS)
	if err != nil {
		return nil, err
	}
	if cfg.Timeout < 0 {
		return nil, inputerr.New("Config.Timeout", cfg.Timeout.String(), "expected a positive duration")
	}
	if cfg.Warm < 0 {
		return nil, inputerr.New("Config.Warm", strconv.Itoa(cfg.Warm), "expected 0 or more connections")
	}
	flagPins, err := parsePins(cfg.Pins)
	if err != nil {
		return nil, err
	}
	pins := flagPins
	if cfg.PinFile != "" {
		filePins, err := readPinFile(cfg.PinFile)
		if err != nil {
			return nil, err
		}
		pins = append(slices.Clone(flagPins), filePins...)
	}
	tlsConfig, err := newTLSConfig(cfg, host)
	if err != nil {
		return nil, err
	}
	timeout := cfg.Timeout
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	c := &Checker{addr: addr, mode: cfg.TLS, tls: tlsConfig, timeout: timeout, flagPins: flagPins, pinFile: cfg.PinFile}
	c.pins.Store(&pinSet{pins: pins})
	if cfg.Warm > 0 {
		c.pool = newWarmPool(cfg.Warm, warmMaxIdle)
	}
	return c, nil
}

// Addr is the address the checker dials.
func (c *Checker) Addr() string { return c.addr }

// Check logs in to the IMAP server as user with password.
// It returns Yes with a nil error, or No or Defer with an error saying why
// (the error never contains the password). Only a NO answer to LOGIN that
// means "these credentials are wrong" gives No; every other failure,
// certificate problems above all, gives Defer.
func (c *Checker) Check(ctx context.Context, user, password string) (Verdict, error) {
	if err := loginCanCarry(user, password); err != nil {
		return No, err
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()

	verdict, err := c.check(ctx, user, password)
	if verdict == Defer {
		err = c.whyEnded(ctx, err)
	}
	return verdict, err
}

// whyEnded is err, or, when ctx (the check's) has ended, what really
// happened: a closed connection is how the time limit shows up inside the
// IMAP client.
func (c *Checker) whyEnded(ctx context.Context, err error) error {
	if err == nil || ctx.Err() == nil {
		return err
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("%s: no answer within %s (%v)", c.addr, c.timeout, err)
	}
	return fmt.Errorf("%s: %w", c.addr, ctx.Err())
}

func (c *Checker) check(ctx context.Context, user, password string) (Verdict, error) {
	session, warm := c.pool.take(ctx)
	c.refill()
	if session != nil && session.pins != c.pins.Load().generation {
		// Made ready under pins that a reload has replaced since: the
		// password goes only where the pins in force would let it.
		c.retire(session)
		session, warm = nil, false
	}
	if session == nil {
		var err error
		if session, err = c.connect(ctx); err != nil {
			return Defer, err
		}
	}
	verdict, unanswered, err := c.login(ctx, session, user, password)
	if unanswered && warm && ctx.Err() == nil {
		// The ready connection died while it waited (server restart,
		// idle time-out): the LOGIN got no answer, so ask again afresh.
		if session, err = c.connect(ctx); err != nil {
			return Defer, err
		}
		verdict, _, err = c.login(ctx, session, user, password)
	}
	return verdict, err
}

// VerifiedChain connects as Check does, up to the point where LOGIN
// would be sent, and returns the chain the handshake verified, leaf first
// and the trusted CA last; then it logs out without sending any
// credential. The pins, if any, apply as for Check. It is how an admin
// learns what to pin (PinOf each certificate).
func (c *Checker) VerifiedChain(ctx context.Context) ([]*x509.Certificate, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	s, err := c.connect(ctx)
	if err != nil {
		return nil, c.whyEnded(ctx, err)
	}
	c.retire(s)
	if len(s.chains) == 0 {
		// Verification always builds a chain; this is not to be reached.
		return nil, fmt.Errorf("%s: TLS: no verified chain", c.addr)
	}
	return s.chains[0], nil
}

// Prewarm opens the ready connections now instead of at the first check.
func (c *Checker) Prewarm() { c.refill() }

// Close drops the ready connections and waits for logouts and warm-ups
// under way.
func (c *Checker) Close() {
	for _, session := range c.pool.close() {
		c.retire(session)
	}
	c.background.Wait()
}

// session is a connection that is ready for LOGIN: TLS verified (and its
// key pinned), greeting read, capabilities checked.
type session struct {
	conn   net.Conn
	client *imapclient.Client
	ready  time.Time
	// chains are what the handshake verified, leaf first; pins is the
	// generation of the pin set they were checked against.
	chains [][]*x509.Certificate
	pins   uint64
}

// connect dials the server and makes a session ready. Every error is a
// reason to defer.
func (c *Checker) connect(ctx context.Context) (*session, error) {
	tcpConn, err := c.dialer.DialContext(ctx, "tcp", c.addr)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	var conn net.Conn = &boundedConn{Conn: tcpConn, left: maxSessionInput}
	// The IMAP client sets its own (30s) deadlines on every read; closing
	// the connection is the one way to hold it to ours.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	if deadline, ok := ctx.Deadline(); ok {
		conn.SetDeadline(deadline)
	}

	pins := c.pins.Load()
	client, chains, err := c.secure(ctx, conn, pins)
	if err != nil {
		conn.Close()
		return nil, err
	}

	fail := func(err error) (*session, error) {
		client.Close()
		return nil, err
	}
	if err := client.WaitGreeting(); err != nil {
		return fail(fmt.Errorf("%s: greeting: %w", c.addr, err))
	}
	if state := client.State(); state != imap.ConnStateNotAuthenticated {
		return fail(fmt.Errorf("%s: server is in state %v before LOGIN (PREAUTH?), cannot check a password", c.addr, state))
	}
	var caps imap.CapSet
	if c.mode == StartTLS {
		// Ask afresh over TLS: capabilities seen before (or sent with the
		// STARTTLS answer) came over clear text and are not to be trusted.
		var err error
		if caps, err = client.Capability().Wait(); err != nil {
			return fail(fmt.Errorf("%s: CAPABILITY after STARTTLS: %w", c.addr, err))
		}
	} else {
		caps = client.Caps()
	}
	if caps == nil {
		return fail(fmt.Errorf("%s: no CAPABILITY answer", c.addr))
	}
	if caps.Has(imap.CapLoginDisabled) {
		return fail(fmt.Errorf("%s: server advertises LOGINDISABLED over TLS, LOGIN not sent", c.addr))
	}
	conn.SetDeadline(time.Time{})
	return &session{conn: conn, client: client, ready: time.Now(), chains: chains, pins: pins.generation}, nil
}

// secure makes conn a TLS connection as c.mode says and returns the IMAP
// client on it, with the chains the handshake verified. pins are checked
// in the handshake, after the chain and the name and before anything is
// sent over TLS, resumed sessions included.
func (c *Checker) secure(ctx context.Context, conn net.Conn, pins *pinSet) (*imapclient.Client, [][]*x509.Certificate, error) {
	var chains [][]*x509.Certificate
	tlsConfig := c.tls.Clone() // shares the session cache
	tlsConfig.VerifyConnection = func(state tls.ConnectionState) error {
		chains = state.VerifiedChains
		return pins.verify(state)
	}
	if c.mode == ImplicitTLS {
		tlsConn := tls.Client(conn, tlsConfig)
		if err := tlsConn.HandshakeContext(ctx); err != nil {
			return nil, nil, describeTLSError(c.addr, err)
		}
		return imapclient.New(tlsConn, nil), chains, nil
	}
	// NewStartTLS sends STARTTLS before anything else and fails unless the
	// handshake (with verification) succeeds, so no credential can travel
	// in clear text, whatever the server advertises.
	client, err := imapclient.NewStartTLS(conn, &imapclient.Options{TLSConfig: tlsConfig})
	if err != nil {
		var imapErr *imap.Error
		if errors.As(err, &imapErr) {
			return nil, nil, fmt.Errorf("%s: STARTTLS refused: %v", c.addr, err)
		}
		return nil, nil, describeTLSError(c.addr, err)
	}
	return client, chains, nil
}

// login sends LOGIN on session and retires the session. unanswered
// reports that no answer came back at all (a broken connection).
func (c *Checker) login(ctx context.Context, s *session, user, password string) (verdict Verdict, unanswered bool, err error) {
	stop := context.AfterFunc(ctx, func() { s.conn.Close() })
	err = s.client.Login(user, password).Wait()
	stop()
	if err == nil {
		c.retire(s)
		return Yes, false, nil
	}
	var imapErr *imap.Error
	if errors.As(err, &imapErr) {
		c.retire(s)
		verdict, err = classifyLoginError(c.addr, user, imapErr)
		return verdict, false, err
	}
	s.client.Close()
	return Defer, true, fmt.Errorf("%s: LOGIN: %w", c.addr, err)
}

// retire logs out of s in the background: the answer is known, and a
// polite LOGOUT lets the server log a clean disconnect.
func (c *Checker) retire(s *session) {
	c.background.Add(1)
	go func() {
		defer c.background.Done()
		s.conn.SetDeadline(time.Now().Add(logoutTimeout))
		timer := time.AfterFunc(logoutTimeout, func() { s.conn.Close() })
		defer timer.Stop()
		_ = s.client.Logout().Wait()
		s.client.Close()
	}()
}

const (
	logoutTimeout = 2 * time.Second
	// warmMaxIdle is how long a ready connection may wait for a check.
	// go-imap gives up on a silent server after 30s, and servers drop
	// clients that do not log in: well below both.
	warmMaxIdle = 20 * time.Second
)

// refill starts warm-ups until the pool holds (or will hold) its size.
func (c *Checker) refill() {
	if c.pool == nil {
		return
	}
	for c.pool.reserve() {
		c.background.Add(1)
		go func() {
			defer c.background.Done()
			ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
			defer cancel()
			s, err := c.connect(ctx)
			if err != nil {
				s = nil // a waiting check dials itself and reports the error
			}
			if rejected := c.pool.arrive(s); rejected != nil {
				c.retire(rejected)
				return
			}
			if s != nil {
				// Log out of it when no check came for it in time.
				time.AfterFunc(c.pool.maxIdle, func() {
					if c.pool.remove(s) {
						c.retire(s)
					}
				})
			}
		}()
	}
	for _, expired := range c.pool.expired() {
		c.retire(expired)
	}
}

// loginCanCarry rejects what an IMAP LOGIN cannot send: NUL, CR and LF
// cannot appear in an IMAP string or literal, so no server can accept them.
func loginCanCarry(user, password string) error {
	if user == "" {
		return errors.New("empty user name")
	}
	if strings.ContainsAny(user, "\x00\r\n") {
		return errors.New("user name contains NUL, CR or LF, which IMAP LOGIN cannot carry")
	}
	if strings.ContainsAny(password, "\x00\r\n") {
		return errors.New("password contains NUL, CR or LF, which IMAP LOGIN cannot carry")
	}
	return nil
}

// credentialCodes are the response codes of a NO to LOGIN that say the
// credentials themselves were refused (RFC 5530). A NO without a code is the
// plain RFC 3501 "user name or password rejected".
var credentialCodes = map[imap.ResponseCode]bool{
	"":                                    true,
	imap.ResponseCodeAuthenticationFailed: true,
	imap.ResponseCodeAuthorizationFailed:  true,
	imap.ResponseCodeExpired:              true,
	imap.ResponseCodeContactAdmin:         true,
}

// classifyLoginError judges a tagged NO or BAD to LOGIN: the credentials
// refused (No), or the server unable to judge them (Defer).
func classifyLoginError(addr, user string, imapErr *imap.Error) (Verdict, error) {
	answer := strings.TrimSpace(fmt.Sprintf("%s [%s] %s", imapErr.Type, imapErr.Code, imapErr.Text))
	if imapErr.Code == "" {
		answer = strings.TrimSpace(fmt.Sprintf("%s %s", imapErr.Type, imapErr.Text))
	}
	if imapErr.Type == imap.StatusResponseTypeNo && credentialCodes[imapErr.Code] {
		return No, fmt.Errorf("%s: login of %q rejected: %s", addr, user, answer)
	}
	// UNAVAILABLE, SERVERBUG, PRIVACYREQUIRED, BAD, ...: the server could
	// not judge the credentials.
	return Defer, fmt.Errorf("%s: login of %q not judged: %s", addr, user, answer)
}

// describeTLSError turns a handshake failure into a line that says what is
// wrong with the certificate, if that is the cause.
func describeTLSError(addr string, err error) error {
	var (
		unknownAuthority x509.UnknownAuthorityError
		hostname         x509.HostnameError
		invalid          x509.CertificateInvalidError
		notPinned        *PinMismatchError
	)
	switch {
	case errors.As(err, &notPinned):
		return fmt.Errorf("%s: %w", addr, notPinned)
	case errors.As(err, &unknownAuthority):
		return fmt.Errorf("%s: certificate not trusted (unknown authority; check Config.CAFile): %w", addr, err)
	case errors.As(err, &hostname):
		return fmt.Errorf("%s: certificate does not match the server name (check Config.ServerName): %w", addr, err)
	case errors.As(err, &invalid):
		return fmt.Errorf("%s: certificate invalid: %w", addr, err)
	}
	return fmt.Errorf("%s: TLS: %w", addr, err)
}

// maxSessionInput bounds what one IMAP connection may receive, TLS records
// included. A session reads a certificate chain, a greeting, capabilities
// and the answers to LOGIN and LOGOUT: a few KiB. The time limit alone
// would let a server stream gigabytes into memory (go-imap buffers a
// string or a response line whole) before Config.Timeout ends the check.
const maxSessionInput = 1 << 20

// errSessionInputTooLarge says the IMAP server sent more than
// maxSessionInput on one connection.
var errSessionInputTooLarge = fmt.Errorf("the server sent more than %d KiB on one connection", maxSessionInput>>10)

// boundedConn fails its reads once left bytes have been read. Only the
// IMAP client's reader goroutine (or the TLS handshake before it) reads.
type boundedConn struct {
	net.Conn
	left int64
}

func (c *boundedConn) Read(p []byte) (int, error) {
	if c.left <= 0 {
		return 0, errSessionInputTooLarge
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.Conn.Read(p)
	c.left -= int64(n)
	return n, err
}
