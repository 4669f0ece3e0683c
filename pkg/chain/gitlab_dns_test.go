package chain

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// dnsServer is a DNS server on a loopback UDP port whose answers the test
// sets (rcode 3 NXDOMAIN, 2 SERVFAIL, 0 with 127.0.0.1 as the address),
// for a Go resolver whose Dial goes to it: the client's handling of DNS
// errors is tested on answers of the real protocol, whatever the resolver
// of the test machine does.
type dnsServer struct {
	conn    net.PacketConn
	rcode   atomic.Int32
	queries atomic.Int64
}

func newDNSServer(t *testing.T, rcode byte) *dnsServer {
	t.Helper()
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &dnsServer{conn: conn}
	s.rcode.Store(int32(rcode))
	t.Cleanup(func() { conn.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			n, addr, err := conn.ReadFrom(buf)
			if err != nil {
				return
			}
			s.queries.Add(1)
			if resp := dnsAnswer(buf[:n], byte(s.rcode.Load())); resp != nil {
				conn.WriteTo(resp, addr)
			}
		}
	}()
	return s
}

// dnsAnswer is the response to query (RFC 1035 4.1): its id, QR and RA
// set, RD copied, rcode, its question echoed and, for an A question with
// rcode 0, the answer 127.0.0.1 (other types get no record).
func dnsAnswer(query []byte, rcode byte) []byte {
	if len(query) < 12 {
		return nil
	}
	end := 12
	for end < len(query) && query[end] != 0 {
		end += int(query[end]) + 1
	}
	end += 1 + 4 // the root label, QTYPE and QCLASS
	if end > len(query) {
		return nil
	}
	typeA := query[end-4] == 0 && query[end-3] == 1
	answers := byte(0)
	if rcode == 0 && typeA {
		answers = 1
	}
	resp := append([]byte{}, query[:2]...)
	resp = append(resp, 0x80|query[2]&0x01, 0x80|rcode, 0, 1, 0, answers, 0, 0, 0, 0)
	resp = append(resp, query[12:end]...)
	if answers == 1 {
		// The name by pointer to the question, A, IN, TTL 0, 4 bytes.
		resp = append(resp, 0xC0, 12, 0, 1, 0, 1, 0, 0, 0, 0, 0, 4, 127, 0, 0, 1)
	}
	return resp
}

func (s *dnsServer) resolver() *net.Resolver {
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, address string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "udp", s.conn.LocalAddr().String())
	}}
}

func dnsTestGitLab(t *testing.T, url string, resolver *net.Resolver, log *bytes.Buffer) *GitLab {
	t.Helper()
	api, err := NewGitLab(GitLabConfig{URL: url, Token: testToken, Resolver: resolver,
		MaxRetries: 3, MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond, Timeout: 5 * time.Second,
		Logger: slog.New(slog.NewTextHandler(log, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return api
}

// Issue 19, item 12: a GitLab host that does not resolve (NXDOMAIN) is a
// mistake in --gitlab-url: one attempt, no retry, an error that is not
// temporary (exit 1) and says which host; one warning, not one per call.
func TestGitLabHostThatDoesNotResolveIsNotRetried(t *testing.T) {
	for _, tc := range []struct {
		name     string
		resolver func(t *testing.T) *net.Resolver
	}{
		{"NXDOMAIN from a DNS server", func(t *testing.T) *net.Resolver { return newDNSServer(t, 3).resolver() }},
		// RFC 6761: .invalid never resolves; this machine's resolver says so
		// at once.
		{"the system resolver on .invalid", func(t *testing.T) *net.Resolver { return nil }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var log bytes.Buffer
			api := dnsTestGitLab(t, "https://gitlab.example.invalid", tc.resolver(t), &log)
			for range 3 {
				_, err := api.GroupProjects(context.Background(), "img")
				var unresolved *HostNotFoundError
				if !errors.As(err, &unresolved) || unresolved.Host != "gitlab.example.invalid" {
					t.Fatalf("err %v (%T), want a *HostNotFoundError for gitlab.example.invalid", err, err)
				}
				var temp interface{ Temporary() bool }
				if !errors.As(err, &temp) || temp.Temporary() {
					t.Errorf("err %v is temporary", err)
				}
				if want := "list projects of group img: GitLab host gitlab.example.invalid does not resolve (no such host); check GitLabConfig.URL"; err.Error() != want {
					t.Errorf("err %q\nwant %q", err, want)
				}
			}
			if requests, retries, _ := api.Stats(); requests != 3 || retries != 0 {
				t.Errorf("%d requests, %d retries; want 3 and 0", requests, retries)
			}
			if log.Len() != 0 {
				t.Errorf("logged (the error says it all):\n%s", log.String())
			}
		})
	}
}

// A GitLab that was reached and whose name then stops resolving (a
// receiver's DNS entry removed) is logged once when it stops and once when
// it resolves again, not at every call.
func TestGitLabHostThatStopsResolvingIsLoggedOnce(t *testing.T) {
	gitlab := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close") // each call resolves the name again
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte("[]"))
	}))
	t.Cleanup(gitlab.Close)
	dns := newDNSServer(t, 0)
	var log bytes.Buffer
	port := gitlab.URL[strings.LastIndex(gitlab.URL, ":"):]
	api := dnsTestGitLab(t, "http://gitlab.example.invalid"+port, dns.resolver(), &log)
	list := func() error { _, err := api.GroupProjects(context.Background(), "img"); return err }
	if err := list(); err != nil {
		t.Fatalf("while it resolves: %v", err)
	}
	dns.rcode.Store(3)
	for range 3 {
		if err := list(); !errors.As(err, new(*HostNotFoundError)) {
			t.Fatalf("after NXDOMAIN: %v, want a *HostNotFoundError", err)
		}
	}
	dns.rcode.Store(0)
	if err := list(); err != nil {
		t.Fatalf("once it resolves again: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(log.String()), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], "level=ERROR") || !strings.Contains(lines[0], "gitlab.example.invalid stopped resolving") ||
		!strings.Contains(lines[1], "level=INFO") || !strings.Contains(lines[1], "resolves again") {
		t.Errorf("log, want one line when it stopped resolving and one when it resolves again:\n%s", log.String())
	}
}

// A DNS server that fails (SERVFAIL) is temporary: retried, then exit 75.
// Each retry is one short line.
func TestGitLabDNSServerFailureIsRetried(t *testing.T) {
	dns := newDNSServer(t, 2)
	var log bytes.Buffer
	api := dnsTestGitLab(t, "https://gitlab.example.invalid", dns.resolver(), &log)
	_, err := api.GroupProjects(context.Background(), "img")
	var unresolved *HostNotFoundError
	var temp interface{ Temporary() bool }
	if err == nil || errors.As(err, &unresolved) || !errors.As(err, &temp) || !temp.Temporary() {
		t.Fatalf("err %v (%T), want a temporary error", err, err)
	}
	if _, retries, _ := api.Stats(); retries != 3 {
		t.Errorf("%d retries, want 3", retries)
	}
	lines := strings.Split(strings.TrimSpace(log.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("%d log lines, want one per retry:\n%s", len(lines), log.String())
	}
	for _, line := range lines {
		if len(line) > 200 || !strings.Contains(line, "path=/api/v4/groups/img/projects") || strings.Contains(line, "?") {
			t.Errorf("retry line of %d characters (want at most 200, the path without query):\n%s", len(line), line)
		}
	}
	if len(err.Error()) > 200 {
		t.Errorf("error of %d characters: %s", len(err.Error()), err)
	}
}

// A receiver whose GitLab stops resolving (a DNS entry removed, say) must
// not fail the projects of its runs: their pipelines wait, with backoff,
// until the name resolves again, and the waits are logged at debug level
// (the client said it once).
func TestUnresolvedGitLabKeepsStepsWaiting(t *testing.T) {
	fx := newEngineFixture(t, testGraph("ops/base:", "ops/ruby: ops/base"))
	fx.api.failNext["ops/ruby"] = []error{&HostNotFoundError{Op: "create pipeline of ops/ruby on main", Host: "gitlab.example.invalid"}}
	fx.pipeline("ops/base", 31, "success", hookOpts{})
	var log bytes.Buffer
	fx.engine.log = slog.New(slog.NewTextHandler(&log, nil))
	next, err := fx.engine.fireDue(context.Background(), context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if s := fx.onlyRun().Steps["ops/ruby"]; s.State != StepQueued || next.IsZero() {
		t.Errorf("ruby after its host did not resolve: %+v, next try %v; want queued with a next try", s, next)
	}
	if log.Len() != 0 {
		t.Errorf("logged above debug level:\n%s", log.String())
	}
	fx.engine.now = func() time.Time { return next }
	fx.work()
	wantCreated(t, fx.api, "ops/ruby")
}
