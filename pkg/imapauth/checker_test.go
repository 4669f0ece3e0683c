package imapauth

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"log"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"
)

const (
	memUser     = "alice"
	memPassword = `pass "with" \ spaces`
)

// wireLog records every byte clients send, before any TLS is removed: what
// an eavesdropper on the network would see.
type wireLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (w *wireLog) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

type recordingListener struct {
	net.Listener
	log *wireLog
}

func (l recordingListener) Accept() (net.Conn, error) {
	conn, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return recordingConn{conn, l.log}, nil
}

type recordingConn struct {
	net.Conn
	log *wireLog
}

func (c recordingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.log.mu.Lock()
	c.log.buf.Write(p[:n])
	c.log.mu.Unlock()
	return n, err
}

// startMemServer runs go-imap's in-memory IMAP server with one user. With
// implicit, it speaks TLS from the start with cert; otherwise it offers
// STARTTLS with cert, or nothing when cert is nil.
func startMemServer(t *testing.T, cert *tls.Certificate, implicit bool) (string, *wireLog) {
	t.Helper()
	mem := imapmemserver.New()
	mem.AddUser(imapmemserver.NewUser(memUser, memPassword))
	var tlsConfig *tls.Config
	if cert != nil {
		tlsConfig = &tls.Config{Certificates: []tls.Certificate{*cert}}
	}
	options := &imapserver.Options{
		NewSession: func(*imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			return mem.NewSession(), nil, nil
		},
		Caps:         imap.CapSet{imap.CapIMAP4rev1: {}},
		Logger:       log.New(&bytes.Buffer{}, "", 0),
		InsecureAuth: implicit, // go-imap only knows a conn is TLS if it did STARTTLS itself
	}
	if !implicit {
		options.TLSConfig = tlsConfig
	}
	server := imapserver.New(options)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	wire := &wireLog{}
	var served net.Listener = recordingListener{ln, wire}
	if implicit {
		served = tls.NewListener(served, tlsConfig)
	}
	go server.Serve(served)
	t.Cleanup(func() { server.Close() })
	return ln.Addr().String(), wire
}

func newTestChecker(t *testing.T, cfg Config) *Checker {
	t.Helper()
	if cfg.Timeout == 0 {
		cfg.Timeout = 5 * time.Second
	}
	checker, err := NewChecker(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return checker
}

func TestCheckAgainstGoIMAPServer(t *testing.T) {
	pki := newTestPKI(t)
	good, wrongName, expired, selfSigned := pki.good(t), pki.wrongName(t), pki.expired(t), pki.selfSigned(t)
	ipAsDNSName := pki.ipAsDNSName(t)
	cases := []struct {
		name       string
		cert       *tls.Certificate
		mode       TLSMode
		caFile     string
		serverName string
		user, pass string
		want       Verdict
		reason     string
	}{
		{"implicit TLS good password", &good.TLS, ImplicitTLS, pki.CAFile, "", memUser, memPassword, Yes, ""},
		{"implicit TLS wrong password", &good.TLS, ImplicitTLS, pki.CAFile, "", memUser, "nope", No, "rejected"},
		{"implicit TLS unknown user", &good.TLS, ImplicitTLS, pki.CAFile, "", "mallory", memPassword, No, "rejected"},
		{"STARTTLS good password", &good.TLS, StartTLS, pki.CAFile, "", memUser, memPassword, Yes, ""},
		{"STARTTLS wrong password", &good.TLS, StartTLS, pki.CAFile, "", memUser, "nope", No, "rejected"},
		{"server name given for an IP", &good.TLS, ImplicitTLS, pki.CAFile, "imap.test", memUser, memPassword, Yes, ""},
		{"wrong name defers even with the right password", &wrongName.TLS, ImplicitTLS, pki.CAFile, "", memUser, memPassword, Defer, "does not match"},
		{"wrong name defers with a wrong password too", &wrongName.TLS, ImplicitTLS, pki.CAFile, "", memUser, "nope", Defer, "does not match"},
		{"server name not in cert", &good.TLS, ImplicitTLS, pki.CAFile, "other.test", memUser, memPassword, Defer, "does not match"},
		{"IP host needs an IP entry, not a DNS name", &ipAsDNSName.TLS, ImplicitTLS, pki.CAFile, "", memUser, memPassword, Defer, "does not match"},
		{"IP host, DNS-only certificate, server name given", &ipAsDNSName.TLS, ImplicitTLS, pki.CAFile, "imap.test", memUser, memPassword, Yes, ""},
		{"expired certificate", &expired.TLS, ImplicitTLS, pki.CAFile, "", memUser, memPassword, Defer, "expired"},
		{"self-signed certificate", &selfSigned.TLS, ImplicitTLS, pki.CAFile, "", memUser, memPassword, Defer, "not trusted"},
		{"STARTTLS with wrong name", &wrongName.TLS, StartTLS, pki.CAFile, "", memUser, memPassword, Defer, "does not match"},
		{"STARTTLS self-signed", &selfSigned.TLS, StartTLS, pki.CAFile, "", memUser, memPassword, Defer, "not trusted"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			addr, wire := startMemServer(t, tc.cert, tc.mode == ImplicitTLS)
			checker := newTestChecker(t, Config{Server: addr, TLS: tc.mode, CAFile: tc.caFile, ServerName: tc.serverName})
			got, err := checker.Check(context.Background(), tc.user, tc.pass)
			if got != tc.want {
				t.Fatalf("verdict %v (%v), want %v", got, err, tc.want)
			}
			if tc.want == Yes && err != nil {
				t.Fatalf("yes with an error: %v", err)
			}
			if tc.want != Yes && (err == nil || !strings.Contains(err.Error(), tc.reason)) {
				t.Fatalf("reason %v, want it to mention %q", err, tc.reason)
			}
			if err != nil && strings.Contains(err.Error(), tc.pass) {
				t.Fatalf("the reason contains the password: %v", err)
			}
			if strings.Contains(wire.String(), tc.pass) {
				t.Fatalf("the password crossed the wire in clear text: %q", wire.String())
			}
		})
	}
}

func TestStartTLSWithoutServerSupportSendsNoLogin(t *testing.T) {
	addr, wire := startMemServer(t, nil, false)
	checker := newTestChecker(t, Config{Server: addr, TLS: StartTLS})
	got, err := checker.Check(context.Background(), memUser, memPassword)
	if got != Defer {
		t.Fatalf("verdict %v (%v), want defer", got, err)
	}
	if strings.Contains(strings.ToUpper(wire.String()), "LOGIN") {
		t.Fatalf("LOGIN was sent to a server without STARTTLS: %q", wire.String())
	}
	if !strings.Contains(wire.String(), "STARTTLS") {
		t.Fatalf("STARTTLS was never asked for: %q", wire.String())
	}
}

func TestConfigErrorsNameTheInput(t *testing.T) {
	pki := newTestPKI(t)
	cases := []struct {
		cfg  Config
		want string
	}{
		{Config{Server: ""}, "Config.Server"},
		{Config{Server: "imap.test:0"}, "Config.Server"},
		{Config{Server: "imap.test:x"}, "Config.Server"},
		{Config{Server: "a b"}, "Config.Server"},
		{Config{Server: "imap.test", CAFile: "/nonexistent/ca.pem"}, "Config.CAFile"},
		{Config{Server: "imap.test", CAFile: pki.dir + "/good.key"}, "Config.CAFile"},
		{Config{Server: "imap.test", ServerName: "a b"}, "Config.ServerName"},
		{Config{Server: "imap.test", Timeout: -time.Second}, "Config.Timeout"},
	}
	for _, tc := range cases {
		_, err := NewChecker(tc.cfg)
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%+v: error %v, want one starting with %s", tc.cfg, err, tc.want)
		}
	}
}

func TestServerAddressDefaults(t *testing.T) {
	cases := []struct {
		server string
		mode   TLSMode
		addr   string
	}{
		{"imap.test", ImplicitTLS, "imap.test:993"},
		{"imap.test", StartTLS, "imap.test:143"},
		{"imap.test:1993", ImplicitTLS, "imap.test:1993"},
		{"192.0.2.1", ImplicitTLS, "192.0.2.1:993"},
		{"::1", StartTLS, "[::1]:143"},
		{"[::1]", ImplicitTLS, "[::1]:993"},
		{"[::1]:10993", ImplicitTLS, "[::1]:10993"},
	}
	for _, tc := range cases {
		checker, err := NewChecker(Config{Server: tc.server, TLS: tc.mode})
		if err != nil || checker.Addr() != tc.addr {
			t.Errorf("%s %v: %v %v, want %s", tc.server, tc.mode, checker, err, tc.addr)
		}
	}
}

// scriptedServer is an IMAP server of a few lines over TLS whose greeting
// and answer to LOGIN the test chooses: for the answers a real server gives
// only in situations a test cannot easily create (UNAVAILABLE,
// LOGINDISABLED after TLS, a silent server).
type scriptedServer struct {
	greeting   string // the whole first line, without CRLF
	loginReply string // the tagged reply after the tag
	tlsConfig  *tls.Config
	silent     bool
	// dropFirst connections are closed right after the greeting, as a
	// server drops idle clients.
	dropFirst int32

	conns    atomic.Int32
	dropped  atomic.Int32 // connections closed by dropFirst
	mu       sync.Mutex
	commands []string
	perConn  []string // "N VERB": the command and the connection's number
	resumed  []bool
}

func (s *scriptedServer) start(t *testing.T) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", s.tlsConfig)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go s.serve(conn.(*tls.Conn))
		}
	}()
	return ln.Addr().String()
}

func (s *scriptedServer) serve(conn *tls.Conn) {
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if err := conn.Handshake(); err != nil {
		return
	}
	s.mu.Lock()
	s.resumed = append(s.resumed, conn.ConnectionState().DidResume)
	s.mu.Unlock()
	if s.silent {
		time.Sleep(5 * time.Second)
		return
	}
	number := s.conns.Add(1)
	fmt.Fprintf(conn, "%s\r\n", s.greeting)
	if number <= s.dropFirst {
		time.Sleep(20 * time.Millisecond)
		conn.Close()
		s.dropped.Add(1)
		return
	}
	lines := bufio.NewScanner(conn)
	for lines.Scan() {
		tag, command, _ := strings.Cut(lines.Text(), " ")
		verb, _, _ := strings.Cut(command, " ")
		s.mu.Lock()
		s.commands = append(s.commands, strings.ToUpper(verb))
		s.perConn = append(s.perConn, fmt.Sprintf("%d %s", number, strings.ToUpper(verb)))
		s.mu.Unlock()
		switch strings.ToUpper(verb) {
		case "CAPABILITY":
			fmt.Fprintf(conn, "* CAPABILITY IMAP4rev1\r\n%s OK done\r\n", tag)
		case "LOGIN":
			fmt.Fprintf(conn, "%s %s\r\n", tag, s.loginReply)
		case "LOGOUT":
			fmt.Fprintf(conn, "* BYE bye\r\n%s OK bye\r\n", tag)
			return
		default:
			fmt.Fprintf(conn, "%s BAD unknown\r\n", tag)
		}
	}
}

// checkerForScripted serves s over TLS with a good certificate of a new
// test PKI (the other settings of s.tlsConfig kept) and returns a checker
// of cfg for it that trusts that PKI.
func checkerForScripted(t *testing.T, s *scriptedServer, cfg Config) *Checker {
	t.Helper()
	pki := newTestPKI(t)
	if s.tlsConfig == nil {
		s.tlsConfig = &tls.Config{}
	}
	s.tlsConfig.Certificates = []tls.Certificate{pki.good(t).TLS}
	cfg.Server, cfg.CAFile = s.start(t), pki.CAFile
	return newTestChecker(t, cfg)
}

func (s *scriptedServer) sawCommand(verb string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.commands {
		if c == verb {
			return true
		}
	}
	return false
}

func TestLoginAnswersMapToVerdicts(t *testing.T) {
	cases := []struct {
		reply string
		want  Verdict
	}{
		{"OK [CAPABILITY IMAP4rev1] Logged in", Yes},
		{"NO [AUTHENTICATIONFAILED] Authentication failed.", No},
		{"NO [AUTHORIZATIONFAILED] not allowed", No},
		{"NO [EXPIRED] password expired", No},
		{"NO [CONTACTADMIN] account disabled", No},
		{"NO LOGIN failed", No},
		{"NO [UNAVAILABLE] Temporary authentication failure.", Defer},
		{"NO [SERVERBUG] Internal error", Defer},
		{"NO [PRIVACYREQUIRED] Plaintext authentication disallowed", Defer},
		{"NO [LIMIT] too many connections", Defer},
		{"NO [INUSE] busy", Defer},
		{"BAD [CLIENTBUG] syntax", Defer},
		{"BAD nope", Defer},
	}
	for _, tc := range cases {
		t.Run(tc.reply, func(t *testing.T) {
			server := &scriptedServer{
				greeting:   "* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] ready",
				loginReply: tc.reply,
			}
			checker := checkerForScripted(t, server, Config{})
			got, err := checker.Check(context.Background(), "alice", "pw")
			if got != tc.want {
				t.Fatalf("verdict %v (%v), want %v", got, err, tc.want)
			}
		})
	}
}

func TestLoginDisabledOverTLSDefersWithoutLogin(t *testing.T) {
	server := &scriptedServer{
		greeting:   "* OK [CAPABILITY IMAP4rev1 LOGINDISABLED AUTH=PLAIN] ready",
		loginReply: "OK Logged in",
	}
	checker := checkerForScripted(t, server, Config{})
	got, err := checker.Check(context.Background(), "alice", "pw")
	if got != Defer || err == nil || !strings.Contains(err.Error(), "LOGINDISABLED") {
		t.Fatalf("verdict %v (%v), want defer naming LOGINDISABLED", got, err)
	}
	if server.sawCommand("LOGIN") {
		t.Fatal("LOGIN sent although the server advertised LOGINDISABLED")
	}
}

func TestSilentServerDefersAtTheTimeout(t *testing.T) {
	server := &scriptedServer{silent: true}
	checker := checkerForScripted(t, server, Config{Timeout: 300 * time.Millisecond})
	start := time.Now()
	got, err := checker.Check(context.Background(), "alice", "pw")
	if got != Defer || err == nil || !strings.Contains(err.Error(), "no answer within 300ms") {
		t.Fatalf("verdict %v (%v), want defer naming the time limit", got, err)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("took %s, the 300ms limit was not kept", took)
	}
}

func TestOldTLSVersionsAreRefused(t *testing.T) {
	server := &scriptedServer{
		greeting: "* OK ready", loginReply: "OK Logged in",
		tlsConfig: &tls.Config{MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11},
	}
	checker := checkerForScripted(t, server, Config{})
	if got, err := checker.Check(context.Background(), "alice", "pw"); got != Defer {
		t.Fatalf("verdict %v (%v) from a TLS 1.1 server, want defer", got, err)
	}
	if server.sawCommand("LOGIN") {
		t.Fatal("LOGIN sent over TLS 1.1")
	}
}

func TestLaterChecksResumeTheTLSSession(t *testing.T) {
	for _, version := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		server := &scriptedServer{
			greeting: "* OK [CAPABILITY IMAP4rev1] ready", loginReply: "OK Logged in",
			tlsConfig: &tls.Config{MaxVersion: version},
		}
		checker := checkerForScripted(t, server, Config{})
		for range 3 {
			if got, err := checker.Check(context.Background(), "alice", "pw"); got != Yes {
				t.Fatalf("verdict %v (%v), want yes", got, err)
			}
		}
		server.mu.Lock()
		resumed := fmt.Sprint(server.resumed)
		server.mu.Unlock()
		if resumed != "[false true true]" {
			t.Errorf("TLS version %x: resumed per connection %s, want [false true true]", version, resumed)
		}
	}
}

func TestCredentialsIMAPCannotCarryAreRejectedLocally(t *testing.T) {
	checker := newTestChecker(t, Config{Server: "127.0.0.1:1"})
	for _, creds := range [][2]string{{"", "pw"}, {"al\nice", "pw"}, {"alice", "p\r\nw"}, {"alice", "p\x00w"}} {
		got, err := checker.Check(context.Background(), creds[0], creds[1])
		if got != No || err == nil {
			t.Errorf("%q: verdict %v (%v), want no without contacting the server", creds, got, err)
		}
	}
}

func (s *scriptedServer) log() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Join(s.perConn, ", ")
}

func TestWarmConnectionServesTheNextCheckAndIsReplaced(t *testing.T) {
	server := &scriptedServer{
		greeting: "* OK [CAPABILITY IMAP4rev1] ready", loginReply: "OK Logged in",
	}
	checker := checkerForScripted(t, server, Config{Warm: 1})
	defer checker.Close()
	checker.Prewarm()
	waitFor(t, func() bool { return server.conns.Load() == 1 })
	if got, err := checker.Check(context.Background(), "alice", "pw"); got != Yes {
		t.Fatalf("verdict %v (%v), want yes", got, err)
	}
	waitFor(t, func() bool { return server.conns.Load() == 2 && strings.Contains(server.log(), "1 LOGOUT") })
	if log := server.log(); !strings.HasPrefix(log, "1 LOGIN") || strings.Contains(log, "2 LOGIN") {
		t.Fatalf("commands %s: want the LOGIN on the ready connection and the second one kept ready", log)
	}
}

func TestDeadWarmConnectionIsReplacedNotDeferred(t *testing.T) {
	server := &scriptedServer{
		greeting: "* OK [CAPABILITY IMAP4rev1] ready", loginReply: "OK Logged in",
		dropFirst: 1,
	}
	checker := checkerForScripted(t, server, Config{Warm: 1})
	defer checker.Close()
	checker.Prewarm()
	waitFor(t, func() bool { return server.dropped.Load() == 1 })
	if got, err := checker.Check(context.Background(), "alice", "pw"); got != Yes {
		t.Fatalf("verdict %v (%v) after the ready connection died, want yes", got, err)
	}
}

func TestIdleWarmConnectionIsLoggedOut(t *testing.T) {
	server := &scriptedServer{
		greeting: "* OK [CAPABILITY IMAP4rev1] ready", loginReply: "OK Logged in",
	}
	checker := checkerForScripted(t, server, Config{Warm: 1})
	defer checker.Close()
	checker.pool.maxIdle = 100 * time.Millisecond
	checker.Prewarm()
	waitFor(t, func() bool { return server.log() == "1 LOGOUT" })
	if n := server.conns.Load(); n != 1 {
		t.Fatalf("%d connections: an idle checker must not reconnect by itself", n)
	}
}

// startTLSScript serves one STARTTLS session per connection: clear-text
// greeting, STARTTLS answered with capabilities in clear text (what a
// man in the middle could forge), then the given capabilities over TLS.
// It records the commands seen over TLS.
func startTLSScript(t *testing.T, cert tls.Certificate, capsOverTLS string) (addr string, commands func() []string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var mu sync.Mutex
	var seen []string
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				conn.SetDeadline(time.Now().Add(10 * time.Second))
				fmt.Fprintf(conn, "* OK [CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED] ready\r\n")
				plain := bufio.NewReader(conn)
				line, err := plain.ReadString('\n')
				tag, command, _ := strings.Cut(strings.TrimSpace(line), " ")
				if err != nil || !strings.EqualFold(command, "STARTTLS") {
					return
				}
				fmt.Fprintf(conn, "%s OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] go ahead\r\n", tag)
				tlsConn := tls.Server(conn, &tls.Config{Certificates: []tls.Certificate{cert}})
				if tlsConn.Handshake() != nil {
					return
				}
				lines := bufio.NewScanner(tlsConn)
				for lines.Scan() {
					tag, command, _ := strings.Cut(lines.Text(), " ")
					verb, _, _ := strings.Cut(command, " ")
					verb = strings.ToUpper(verb)
					mu.Lock()
					seen = append(seen, verb)
					mu.Unlock()
					switch verb {
					case "CAPABILITY":
						fmt.Fprintf(tlsConn, "* CAPABILITY %s\r\n%s OK done\r\n", capsOverTLS, tag)
					case "LOGIN":
						fmt.Fprintf(tlsConn, "%s OK Logged in\r\n", tag)
					case "LOGOUT":
						fmt.Fprintf(tlsConn, "* BYE bye\r\n%s OK bye\r\n", tag)
						return
					default:
						fmt.Fprintf(tlsConn, "%s BAD unknown\r\n", tag)
					}
				}
			}()
		}
	}()
	return ln.Addr().String(), func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(seen)
	}
}

func TestStartTLSJudgesLoginDisabledByTheCapabilitiesOverTLS(t *testing.T) {
	pki := newTestPKI(t)
	good := pki.good(t)
	cases := []struct {
		capsOverTLS string
		want        Verdict
	}{
		// LOGINDISABLED before TLS only: log in once TLS is up.
		{"IMAP4rev1 AUTH=PLAIN", Yes},
		// Still LOGINDISABLED over TLS, although the clear-text answer to
		// STARTTLS claimed otherwise: no LOGIN, defer.
		{"IMAP4rev1 AUTH=PLAIN LOGINDISABLED", Defer},
	}
	for _, tc := range cases {
		addr, commands := startTLSScript(t, good.TLS, tc.capsOverTLS)
		checker := newTestChecker(t, Config{Server: addr, TLS: StartTLS, CAFile: pki.CAFile})
		got, err := checker.Check(context.Background(), "alice", "pw")
		checker.Close()
		if got != tc.want {
			t.Errorf("capabilities over TLS %q: verdict %v (%v), want %v", tc.capsOverTLS, got, err, tc.want)
		}
		if sawLogin := slices.Contains(commands(), "LOGIN"); sawLogin != (tc.want == Yes) {
			t.Errorf("capabilities over TLS %q: commands over TLS %v", tc.capsOverTLS, commands())
		}
	}
}

// TestServerSendingTooMuchIsCutOff: a server that streams an endless line
// (here a 2 MiB greeting) would have go-imap buffer it whole until the time
// limit ends the check; the session stops reading at 1 MiB and defers.
func TestServerSendingTooMuchIsCutOff(t *testing.T) {
	server := &scriptedServer{greeting: "* OK [CAPABILITY IMAP4rev1] " + strings.Repeat("x", 2<<20), loginReply: "OK welcome"}
	checker := checkerForScripted(t, server, Config{Timeout: 10 * time.Second})
	got, err := checker.Check(context.Background(), "alice", "pw")
	if got != Defer || err == nil || !strings.Contains(err.Error(), "more than 1024 KiB") {
		t.Fatalf("verdict %v (%v), want defer naming the 1 MiB bound", got, err)
	}
	if server.sawCommand("LOGIN") {
		t.Fatal("LOGIN was sent after the oversized greeting")
	}
}
