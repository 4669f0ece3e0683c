package imapauth

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/opsctl/opsctl/internal/testenv"
)

// checkerFunc lets a test decide the answers of the daemon's checker.
type checkerFunc func(ctx context.Context, user, password string) (Verdict, error)

func (f checkerFunc) Check(ctx context.Context, user, password string) (Verdict, error) {
	return f(ctx, user, password)
}

// passwords answers yes for the listed user/password pairs, no otherwise,
// and counts its calls.
type passwords struct {
	valid map[string]string
	calls atomic.Int64
}

func (p *passwords) Check(_ context.Context, user, password string) (Verdict, error) {
	p.calls.Add(1)
	if want, ok := p.valid[user]; ok && want == password {
		return Yes, nil
	}
	return No, errors.New("rejected")
}

// startDaemon serves s on a fresh UNIX socket until the test ends and
// returns the socket's path.
func startDaemon(t *testing.T, s *Server) string {
	t.Helper()
	path, ln := listenTestSocket(t)
	serveInBackground(t, s, ln)
	return path
}

// listenTestSocket is a fresh UNIX socket listener, made by ListenUnix.
func listenTestSocket(t *testing.T) (string, net.Listener) {
	t.Helper()
	path := socketPath(t)
	ln, err := ListenUnix(path, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	return path, ln
}

// backgroundServe is a Server serving in a goroutine of the test.
type backgroundServe struct {
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
}

// serveInBackground runs s.Serve on ln until cancel or stop is called, or
// the test ends; an error of Serve not collected by stop fails the test.
func serveInBackground(t *testing.T, s *Server, ln net.Listener) *backgroundServe {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	b := &backgroundServe{cancel: cancel, done: make(chan error, 1)}
	go func() { b.done <- s.Serve(ctx, ln) }()
	t.Cleanup(func() {
		if err := b.stop(); err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return b
}

// stop ends Serve's context, waits for Serve and returns its error (once:
// later calls return nil).
func (b *backgroundServe) stop() error {
	var err error
	b.once.Do(func() {
		b.cancel()
		err = <-b.done
	})
	return err
}

// inParallel runs do(0) ... do(n-1) on workers goroutines and returns
// their results in no particular order.
func inParallel(n, workers int, do func(i int) string) []string {
	results := make(chan string, n)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += workers {
				results <- do(i)
			}
		}()
	}
	wg.Wait()
	close(results)
	var all []string
	for r := range results {
		all = append(all, r)
	}
	return all
}

// askAsync sends raw to the daemon from a goroutine (see ask); the channel
// gets the reply, or what went wrong instead.
func askAsync(path, raw string) <-chan string {
	reply := make(chan string, 1)
	go func() {
		got, err := askErr(path, raw)
		if err != nil {
			got = err.Error()
		}
		reply <- got
	}()
	return reply
}

// ask sends raw to the daemon without half-closing and returns all it
// replies until it closes the connection.
func ask(t *testing.T, path, raw string) string {
	t.Helper()
	reply, err := askErr(path, raw)
	if err != nil {
		t.Fatal(err)
	}
	return reply
}

func askErr(path, raw string) (string, error) {
	conn, err := net.Dial("unix", path)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(conn, raw); err != nil {
		return "", err
	}
	reply, err := io.ReadAll(conn)
	if err != nil {
		return "", fmt.Errorf("reading the reply: %w (got %q)", err, reply)
	}
	return string(reply), nil
}

func request(user, password string) string { return b64(user) + " " + b64(password) + "\n" }

// eximSees sends request the way Exim's ${readsocket} does (connect,
// write, shut down writing, read to the end of input) and returns what
// Exim hands to server_condition with the recipe of docs/imap-auth.md:
// the reply; its fail string "defer" when connecting or writing failed;
// "" when reading failed, even after bytes came (Exim reads with stdio,
// and fgets returns nothing after a read error). Both outcomes were
// measured with Exim 4.96 (exim -be). err tells what happened; a client
// left waiting longer than 10s is an error too (a hang, for the tests).
func eximSees(path, request string) (string, error) {
	return eximSeesWithin(path, request, 10*time.Second)
}

// eximSeesWithin is eximSees with a time limit of patience (reported as
// "no answer within"): shorter than a time-out of the daemon, it tells a
// client answered at once from one answered when that time-out ended.
func eximSeesWithin(path, request string, patience time.Duration) (string, error) {
	conn, err := net.Dial("unix", path)
	if err != nil {
		return "defer", fmt.Errorf("connect: %w", err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(patience))
	if _, err := io.WriteString(conn, request); err != nil {
		return "defer", fmt.Errorf("write: %w", err)
	}
	conn.(*net.UnixConn).CloseWrite()
	reply, err := io.ReadAll(conn)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return "", fmt.Errorf("no answer within %s (got %q)", patience, reply)
	}
	if err != nil {
		return "", fmt.Errorf("read: %w (after %q)", err, reply)
	}
	return string(reply), nil
}

func TestDaemonRepliesWithoutNewlineAndCloses(t *testing.T) {
	checker := &passwords{valid: map[string]string{"alice": "right pw"}}
	path := startDaemon(t, &Server{Checker: checker})
	cases := []struct{ name, raw, want string }{
		{"good password", request("alice", "right pw"), "yes"},
		{"wrong password", request("alice", "wrong"), "no"},
		{"unknown user", request("bob", "right pw"), "no"},
		{"CRLF line end", strings.TrimSuffix(request("alice", "right pw"), "\n") + "\r\n", "yes"},
		{"not base64", "alice right-pw\n", "defer"},
		{"one field", b64("alice") + "\n", "defer"},
		{"too long", strings.Repeat("A", MaxRequestLine+10) + "\n", "defer"},
	}
	for _, tc := range cases {
		if got := ask(t, path, tc.raw); got != tc.want {
			t.Errorf("%s: reply %q, want %q", tc.name, got, tc.want)
		}
	}
	if calls := checker.calls.Load(); calls != 4 {
		t.Errorf("checker called %d times, want 4 (never for a malformed request)", calls)
	}
}

func TestDaemonAnswersHalfClosedRequestAndDefersWithoutNewline(t *testing.T) {
	checker := &passwords{valid: map[string]string{"alice": "pw"}}
	path := startDaemon(t, &Server{Checker: checker})
	for raw, want := range map[string]string{request("alice", "pw"): "yes", strings.TrimSuffix(request("alice", "pw"), "\n"): "defer"} {
		conn, err := net.Dial("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(conn, raw)
		conn.(*net.UnixConn).CloseWrite()
		reply, _ := io.ReadAll(conn)
		conn.Close()
		if string(reply) != want {
			t.Errorf("%q then half-close: reply %q, want %q", raw, reply, want)
		}
	}
}

func TestDaemonRefusesUIDsNotAllowed(t *testing.T) {
	checker := &passwords{valid: map[string]string{"alice": "pw"}}
	reg := prometheus.NewRegistry()
	metrics := NewMetrics(reg)
	path := startDaemon(t, &Server{Checker: checker, AllowUIDs: []uint32{uint32(os.Getuid()) + 4242}, Metrics: metrics})
	// No reply at all would be an empty string to ${readsocket}, which
	// Exim's server_condition takes as a failed authentication (535): a
	// wrong --allow-uid would then turn every login into "wrong password".
	// "defer" makes it a temporary error (435) and reveals nothing.
	// The reply may come, or (when the daemon shut the connection before
	// the request was written) the write fails and Exim answers its fail
	// string: "defer" either way, never "".
	if got, err := eximSees(path, request("alice", "pw")); got != "defer" {
		t.Fatalf("a client of a uid not allowed: Exim would see %q (%v); want defer", got, err)
	}
	if checker.calls.Load() != 0 {
		t.Fatal("the checker ran for a refused client")
	}
	if n := testutil.ToFloat64(metrics.refused); n != 1 {
		t.Fatalf("refused counter %v, want 1", n)
	}
}

func TestDaemonDefaultAllowsOwnUID(t *testing.T) {
	checker := &passwords{valid: map[string]string{"alice": "pw"}}
	path := startDaemon(t, &Server{Checker: checker})
	if got := ask(t, path, request("alice", "pw")); got != "yes" {
		t.Fatalf("own uid got %q, want yes", got)
	}
}

func TestDaemonBoundsConcurrencyAndQueue(t *testing.T) {
	release := make(chan struct{})
	var running, maxRunning atomic.Int64
	checker := checkerFunc(func(ctx context.Context, user, password string) (Verdict, error) {
		n := running.Add(1)
		defer running.Add(-1)
		for {
			old := maxRunning.Load()
			if n <= old || maxRunning.CompareAndSwap(old, n) {
				break
			}
		}
		<-release
		return Yes, nil
	})
	server := &Server{Checker: checker, MaxConcurrent: 2, MaxQueue: 3}
	path := startDaemon(t, server)

	var replies []<-chan string
	for range 5 { // 2 run, 3 wait
		replies = append(replies, askAsync(path, request("alice", "pw")))
	}
	waitFor(t, func() bool { return running.Load() == 2 && server.waiting.Load() == 3 })
	if got := ask(t, path, request("alice", "pw")); got != "defer" {
		t.Fatalf("request beyond the queue got %q, want defer", got)
	}
	close(release)
	for _, reply := range replies {
		if got := <-reply; got != "yes" {
			t.Errorf("queued request got %q, want yes", got)
		}
	}
	if maxRunning.Load() != 2 {
		t.Errorf("%d logins ran at once, want at most 2", maxRunning.Load())
	}
}

func TestDaemonQueueWaitIsBounded(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	entered := make(chan struct{}, 1)
	checker := checkerFunc(func(ctx context.Context, user, password string) (Verdict, error) {
		entered <- struct{}{}
		<-release
		return Yes, nil
	})
	server := &Server{Checker: checker, MaxConcurrent: 1, QueueWait: 100 * time.Millisecond}
	path := startDaemon(t, server)
	go askErr(path, request("alice", "pw"))
	<-entered
	if got := ask(t, path, request("bob", "pw")); got != "defer" {
		t.Fatalf("request that waited too long got %q, want defer", got)
	}
}

// TestSlowClientGetsDeferAndIsDisconnected: no answer at all would reach
// Exim's ${readsocket} as an empty string, a failed authentication.
func TestSlowClientGetsDeferAndIsDisconnected(t *testing.T) {
	checker := &passwords{}
	path := startDaemon(t, &Server{Checker: checker, ReadTimeout: 100 * time.Millisecond})
	conn, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	io.WriteString(conn, b64("alice"))
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	reply, err := io.ReadAll(conn)
	if err != nil || string(reply) != "defer" {
		t.Fatalf("slow client: reply %q, %v; want defer, then the connection closed", reply, err)
	}
}

func TestCacheAnswersRepeatsAndForgetsOnRejection(t *testing.T) {
	checker := &passwords{valid: map[string]string{"alice": "pw1"}}
	reg := prometheus.NewRegistry()
	metrics := NewMetrics(reg)
	path := startDaemon(t, &Server{Checker: checker, Cache: NewCache(time.Minute, 0), Metrics: metrics})
	steps := []struct {
		user, password, want string
		calls                int64
	}{
		{"alice", "pw1", "yes", 1},
		{"alice", "pw1", "yes", 1}, // from the cache
		{"alice", "other", "no", 2},
		{"alice", "pw1", "yes", 3}, // the rejection emptied the cache
		{"alice", "pw1", "yes", 3},
	}
	for i, step := range steps {
		if got := ask(t, path, request(step.user, step.password)); got != step.want {
			t.Fatalf("step %d: %q, want %q", i, got, step.want)
		}
		if calls := checker.calls.Load(); calls != step.calls {
			t.Fatalf("step %d: %d IMAP checks, want %d", i, calls, step.calls)
		}
	}
	if hits := testutil.ToFloat64(metrics.requests.WithLabelValues("yes", "cache")); hits != 2 {
		t.Errorf("cache hits counted %v, want 2", hits)
	}
	if imapYes := testutil.ToFloat64(metrics.requests.WithLabelValues("yes", "imap")); imapYes != 2 {
		t.Errorf("IMAP yes counted %v, want 2", imapYes)
	}
}

func TestCacheKeepsNoPasswordAndExpires(t *testing.T) {
	now := time.Unix(1000, 0)
	cache := NewCache(time.Minute, 2)
	cache.now = func() time.Time { return now }
	cache.Remember("alice", "hunter2", cache.Generation("alice"))
	for _, entry := range cache.entries {
		if strings.Contains(string(entry.sum[:])+string(entry.salt[:]), "hunter2") {
			t.Fatal("the password is stored")
		}
	}
	if !cache.Hit("alice", "hunter2") || cache.Hit("alice", "hunter3") || cache.Hit("bob", "hunter2") {
		t.Fatal("hit for the wrong credentials, or miss for the right ones")
	}
	now = now.Add(time.Second)
	cache.Remember("bob", "x", cache.Generation("bob"))
	now = now.Add(time.Second)
	cache.Remember("carol", "y", cache.Generation("carol")) // evicts the entry that expires first
	if len(cache.entries) != 2 || cache.Hit("alice", "hunter2") {
		t.Fatalf("size bound not kept: %d entries", len(cache.entries))
	}
	now = now.Add(time.Minute)
	if cache.Hit("carol", "y") {
		t.Fatal("expired entry hit")
	}
}

func TestServeFinishesRequestsInFlightOnShutdown(t *testing.T) {
	started, release := make(chan struct{}), make(chan struct{})
	checker := checkerFunc(func(ctx context.Context, user, password string) (Verdict, error) {
		close(started)
		<-release
		return Yes, nil
	})
	// A failed wait must not leave the check, and Serve with it, hanging.
	releaseOnce := sync.OnceFunc(func() { close(release) })
	defer releaseOnce()
	path, ln := listenTestSocket(t)
	serve := serveInBackground(t, &Server{Checker: checker}, ln)
	reply := askAsync(path, request("alice", "pw"))
	<-started
	serve.cancel()
	// The listener is closed (and its file gone) while the check still runs.
	waitFor(t, func() bool { _, err := os.Stat(path); return os.IsNotExist(err) })
	releaseOnce()
	if got := <-reply; got != "yes" {
		t.Fatalf("request in flight at shutdown got %q, want yes", got)
	}
	if err := serve.stop(); err != nil {
		t.Fatalf("Serve: %v", err)
	}
}

func TestServeDefersRequestsStillRunningAfterTheGrace(t *testing.T) {
	started := make(chan struct{})
	checker := checkerFunc(func(ctx context.Context, user, password string) (Verdict, error) {
		close(started)
		<-ctx.Done() // a login that would never end by itself
		return Defer, ctx.Err()
	})
	path, ln := listenTestSocket(t)
	serve := serveInBackground(t, &Server{Checker: checker, ShutdownGrace: 50 * time.Millisecond}, ln)
	reply := askAsync(path, request("alice", "pw"))
	<-started
	serve.cancel()
	if got := <-reply; got != "defer" {
		t.Fatalf("request still running after the grace got %q, want defer", got)
	}
	if err := serve.stop(); err != nil {
		t.Fatalf("Serve: %v", err)
	}
}

func TestListenUnixReplacesOnlyStaleSockets(t *testing.T) {
	dir := t.TempDir()
	live := filepath.Join(dir, "live.sock")
	ln, err := ListenUnix(live, 0o660)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if info, _ := os.Stat(live); info.Mode().Perm() != 0o660 {
		t.Errorf("mode %v, want 0660", info.Mode().Perm())
	}
	if _, err := ListenUnix(live, 0o660); err == nil || !strings.Contains(err.Error(), "another process") {
		t.Errorf("second daemon on a live socket: %v", err)
	}

	stale := filepath.Join(dir, "stale.sock")
	staleLn, _ := net.Listen("unix", stale)
	staleLn.(*net.UnixListener).SetUnlinkOnClose(false)
	staleLn.Close()
	ln2, err := ListenUnix(stale, 0o600)
	if err != nil {
		t.Fatalf("stale socket not replaced: %v", err)
	}
	ln2.Close()

	regular := filepath.Join(dir, "file")
	os.WriteFile(regular, []byte("keep me"), 0o600)
	if _, err := ListenUnix(regular, 0o600); err == nil {
		t.Error("a regular file was replaced by a socket")
	}
	if data, _ := os.ReadFile(regular); string(data) != "keep me" {
		t.Error("the regular file was changed")
	}
}

func TestActivationListenerReadsSystemdEnvironment(t *testing.T) {
	env := func(vars map[string]string) func(string) string {
		return func(k string) string { return vars[k] }
	}
	pid := strconv.Itoa(os.Getpid())
	cases := []struct {
		name    string
		vars    map[string]string
		wantErr string
	}{
		{"not activated", map[string]string{}, ""},
		{"meant for another process", map[string]string{"LISTEN_PID": "1", "LISTEN_FDS": "1"}, ""},
		{"two sockets", map[string]string{"LISTEN_PID": pid, "LISTEN_FDS": "2"}, "exactly one"},
		{"bad count", map[string]string{"LISTEN_PID": pid, "LISTEN_FDS": "x"}, "LISTEN_FDS"},
		{"bad pid", map[string]string{"LISTEN_PID": "x", "LISTEN_FDS": "1"}, "LISTEN_PID"},
	}
	for _, tc := range cases {
		ln, err := ActivationListener(env(tc.vars))
		if ln != nil {
			ln.Close()
			t.Errorf("%s: got a listener", tc.name)
		}
		if (tc.wantErr == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.wantErr)) {
			t.Errorf("%s: error %v, want %q", tc.name, err, tc.wantErr)
		}
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	if !testenv.WaitUntil(t, 5*time.Second, cond) {
		t.Fatal("condition not reached within 5s")
	}
}

func TestDaemonRefusesClientsWhoseUIDCannotBeChecked(t *testing.T) {
	// Only a UNIX socket tells who the client is (SO_PEERCRED); on any other
	// listener the allow-list cannot be applied, so nobody is checked: every
	// request gets defer.
	checker := &passwords{valid: map[string]string{"alice": "pw"}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serveInBackground(t, &Server{Checker: checker}, ln)
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(conn, request("alice", "pw"))
	reply, _ := io.ReadAll(conn)
	if string(reply) != "defer" || checker.calls.Load() != 0 {
		t.Fatalf("a TCP client got %q after %d checks; want defer and no check", reply, checker.calls.Load())
	}
}

func TestCacheKeepsNoLateYesThatARejectionOvertook(t *testing.T) {
	// The first check is judged before the password changes but answers
	// only after a second check of the same password was refused: the
	// refusal must win, or the old password stays good for the whole TTL.
	firstStarted, release := make(chan struct{}), make(chan struct{})
	var calls atomic.Int64
	checker := checkerFunc(func(ctx context.Context, user, password string) (Verdict, error) {
		if calls.Add(1) == 1 {
			close(firstStarted)
			<-release
			return Yes, nil
		}
		return No, errors.New("rejected")
	})
	path := startDaemon(t, &Server{Checker: checker, Cache: NewCache(time.Minute, 0)})
	first := askAsync(path, request("alice", "old"))
	<-firstStarted
	if got := ask(t, path, request("alice", "old")); got != "no" {
		t.Fatalf("second check: %q, want no", got)
	}
	close(release)
	if got := <-first; got != "yes" {
		t.Fatalf("first check: %q, want yes", got)
	}
	if got := ask(t, path, request("alice", "old")); got != "no" {
		t.Fatalf("after the refusal the late yes was cached: %q, want no", got)
	}
	if n := calls.Load(); n != 3 {
		t.Fatalf("%d IMAP checks, want 3 (none answered from the cache)", n)
	}
}

// What docs/imap-auth.md promises about a password change with the cache
// on: the old password keeps being answered from the cache (the server is
// not asked) until a login with the new one, a rejected login of the user
// or the TTL ends its entry.
func TestCacheAnswersTheOldPasswordUntilTheNewOneLogsIn(t *testing.T) {
	checker := &passwords{valid: map[string]string{"alice": "old"}}
	path := startDaemon(t, &Server{Checker: checker, Cache: NewCache(time.Minute, 0)})
	if got := ask(t, path, request("alice", "old")); got != "yes" {
		t.Fatalf("old password before the change: %q", got)
	}
	checker.valid = map[string]string{"alice": "new"} // no check runs now
	steps := []struct {
		password, want string
		calls          int64
	}{
		{"old", "yes", 1}, // from the cache: the server is not asked
		{"new", "yes", 2}, // a miss: the server says yes, the entry is replaced
		{"old", "no", 3},  // a miss now: the server says no
	}
	for i, step := range steps {
		if got := ask(t, path, request("alice", step.password)); got != step.want {
			t.Fatalf("step %d (%s password): %q, want %q", i, step.password, got, step.want)
		}
		if calls := checker.calls.Load(); calls != step.calls {
			t.Fatalf("step %d: %d IMAP checks, want %d", i, calls, step.calls)
		}
	}
}
