package imapauth

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// Checker checks user names and passwords by logging in to one IMAP server.
// It is safe for concurrent use; its connections share one TLS session cache.
type Checker struct {
	addr    string
	mode    TLSMode
	tls     *tls.Config
	timeout time.Duration
	dialer  net.Dialer
}

// NewChecker validates cfg and loads its CA file. Its errors are
// configuration errors: they name the flag at fault.
func NewChecker(cfg Config) (*Checker, error) {
	host, addr, err := splitServer(cfg.Server, cfg.TLS)
	if err != nil {
		return nil, err
	}
	if cfg.Timeout < 0 {
		return nil, fmt.Errorf("--timeout %s: expected a positive duration", cfg.Timeout)
	}
	tlsConfig, err := newTLSConfig(cfg, host)
	if err != nil {
		return nil, err
	}
	timeout := cfg.Timeout
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	return &Checker{addr: addr, mode: cfg.TLS, tls: tlsConfig, timeout: timeout}, nil
}

// Addr is the address the checker dials.
func (c *Checker) Addr() string { return c.addr }

// Check logs in to the IMAP server as user with password and logs out.
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
	if err != nil && verdict == Defer && ctx.Err() != nil {
		// A closed connection is how the time limit shows up inside the
		// IMAP client; say what really happened.
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return Defer, fmt.Errorf("%s: no answer within %s (%v)", c.addr, c.timeout, err)
		}
		return Defer, fmt.Errorf("%s: %w", c.addr, ctx.Err())
	}
	return verdict, err
}

func (c *Checker) check(ctx context.Context, user, password string) (Verdict, error) {
	conn, err := c.dialer.DialContext(ctx, "tcp", c.addr)
	if err != nil {
		return Defer, fmt.Errorf("connect: %w", err)
	}
	defer conn.Close()
	// The IMAP client sets its own (30s) deadlines on every read; closing
	// the connection is the one way to hold it to ours.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	if deadline, ok := ctx.Deadline(); ok {
		conn.SetDeadline(deadline)
	}

	var client *imapclient.Client
	switch c.mode {
	case ImplicitTLS:
		tlsConn := tls.Client(conn, c.tls)
		if err := tlsConn.HandshakeContext(ctx); err != nil {
			return Defer, describeTLSError(c.addr, err)
		}
		client = imapclient.New(tlsConn, nil)
	case StartTLS:
		// NewStartTLS sends STARTTLS before anything else and fails unless
		// the handshake (with verification) succeeds, so no credential can
		// travel in clear text, whatever the server advertises.
		client, err = imapclient.NewStartTLS(conn, &imapclient.Options{TLSConfig: c.tls})
		if err != nil {
			var imapErr *imap.Error
			if errors.As(err, &imapErr) {
				return Defer, fmt.Errorf("%s: STARTTLS refused: %v", c.addr, err)
			}
			return Defer, describeTLSError(c.addr, err)
		}
	}
	defer client.Close()

	if err := client.WaitGreeting(); err != nil {
		return Defer, fmt.Errorf("%s: greeting: %w", c.addr, err)
	}
	if state := client.State(); state != imap.ConnStateNotAuthenticated {
		return Defer, fmt.Errorf("%s: server is in state %v before LOGIN (PREAUTH?), cannot check a password", c.addr, state)
	}
	caps := client.Caps()
	if caps == nil {
		return Defer, fmt.Errorf("%s: no CAPABILITY answer", c.addr)
	}
	if caps.Has(imap.CapLoginDisabled) {
		return Defer, fmt.Errorf("%s: server advertises LOGINDISABLED over TLS, LOGIN not sent", c.addr)
	}

	err = client.Login(user, password).Wait()
	if err != nil {
		return classifyLoginError(c.addr, user, err)
	}
	// Log out politely so the server logs a clean disconnect; the answer is
	// already known, so a failure here changes nothing.
	_ = client.Logout().Wait()
	return Yes, nil
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

func classifyLoginError(addr, user string, err error) (Verdict, error) {
	var imapErr *imap.Error
	if errors.As(err, &imapErr) {
		answer := strings.TrimSpace(fmt.Sprintf("%s [%s] %s", imapErr.Type, imapErr.Code, imapErr.Text))
		if imapErr.Code == "" {
			answer = strings.TrimSpace(fmt.Sprintf("%s %s", imapErr.Type, imapErr.Text))
		}
		if imapErr.Type == imap.StatusResponseTypeNo && credentialCodes[imapErr.Code] {
			return No, fmt.Errorf("%s: login of %q rejected: %s", addr, user, answer)
		}
		// UNAVAILABLE, SERVERBUG, PRIVACYREQUIRED, BAD, ...: the server
		// could not judge the credentials.
		return Defer, fmt.Errorf("%s: login of %q not judged: %s", addr, user, answer)
	}
	return Defer, fmt.Errorf("%s: LOGIN: %w", addr, err)
}

// describeTLSError turns a handshake failure into a line that says what is
// wrong with the certificate, if that is the cause.
func describeTLSError(addr string, err error) error {
	var (
		unknownAuthority x509.UnknownAuthorityError
		hostname         x509.HostnameError
		invalid          x509.CertificateInvalidError
	)
	switch {
	case errors.As(err, &unknownAuthority):
		return fmt.Errorf("%s: certificate not trusted (unknown authority; check --ca-file): %w", addr, err)
	case errors.As(err, &hostname):
		return fmt.Errorf("%s: certificate does not match the server name (check --server-name): %w", addr, err)
	case errors.As(err, &invalid):
		return fmt.Errorf("%s: certificate invalid: %w", addr, err)
	}
	return fmt.Errorf("%s: TLS: %w", addr, err)
}
