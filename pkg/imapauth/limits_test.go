package imapauth

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestConnectionLimitsAreSizedFromTheDescriptorLimit(t *testing.T) {
	cases := []struct {
		name                 string
		openFiles            uint64
		reserved, total, uid int
		wantTotal, wantUID   int
		wantErr              string
	}{
		{"systemd's default soft limit", 1024, 75, 0, 0, 949, 474, ""},
		{"systemd's hard limit: the ceiling", 524288, 75, 0, 0, 4096, 2048, ""},
		{"caps given", 1024, 75, 100, 10, 100, 10, ""},
		{"per uid given alone", 1024, 75, 0, 900, 949, 900, ""},
		{"total given alone", 1024, 75, 10, 0, 10, 5, ""},
		{"one slot", 76, 75, 0, 0, 1, 1, ""},
		{"no room at all", 75, 75, 0, 0, 0, 0, "leaves no room"},
		{"total above the room", 1024, 75, 950, 0, 0, 0, "Server.MaxConnections 950: the descriptor limit (RLIMIT_NOFILE 1024) leaves room for 949"},
		{"per uid above the total", 1024, 75, 100, 101, 0, 0, "Server.MaxConnectionsPerUID 101: expected at most Server.MaxConnections (100)"},
		{"negative total", 1024, 75, -1, 0, 0, 0, "Server.MaxConnections -1"},
		{"negative per uid", 1024, 75, 0, -1, 0, 0, "Server.MaxConnectionsPerUID -1"},
	}
	for _, c := range cases {
		limits, err := sizeConnectionLimits(c.openFiles, c.reserved, c.total, c.uid)
		if c.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Errorf("%s: error %v, want %q", c.name, err, c.wantErr)
			}
			continue
		}
		if err != nil || limits.Total != c.wantTotal || limits.PerUID != c.wantUID {
			t.Errorf("%s: %+v, %v; want total %d, per uid %d", c.name, limits, err, c.wantTotal, c.wantUID)
		}
	}
}

func TestServeRefusesToStartWithCapsTheDescriptorsCannotHold(t *testing.T) {
	path, ln := listenTestSocket(t)
	err := (&Server{Checker: &passwords{}, MaxConnections: 1 << 30}).Serve(context.Background(), ln)
	if err == nil || !strings.Contains(err.Error(), "Server.MaxConnections") {
		t.Fatalf("Serve with more connections than descriptors: %v", err)
	}
	if _, statErr := os.Stat(path); !os.IsNotExist(statErr) {
		t.Errorf("the listener was left open: %v", statErr)
	}
}

func socketPath(t *testing.T) string { return t.TempDir() + "/auth.sock" }

// syncBuffer collects log lines written from several goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) lines(containing string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Count(b.buf.String(), containing)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestRefusedFloodCostsTwoLogLinesAndEveryClientSeesDefer: thousands of
// connections from a uid that is not allowed, written the way Exim writes
// (and some not even writing): the log gets the first refusal and one
// line with the count, each client a "defer" Exim can read (never the
// empty string a reset connection gives, which Exim takes for a wrong
// password), and the metric counts them all.
func TestRefusedFloodCostsTwoLogLinesAndEveryClientSeesDefer(t *testing.T) {
	var log syncBuffer
	metrics := NewMetrics(prometheus.NewRegistry())
	server := &Server{Checker: &passwords{}, AllowUIDs: []uint32{uint32(os.Getuid()) + 4242}, Metrics: metrics,
		Logger: slog.New(slog.NewTextHandler(&log, nil))}
	path, ln := listenTestSocket(t)
	start := time.Now()
	serve := serveInBackground(t, server, ln)

	const clients, workers = 3000, 4
	seen := inParallel(clients, workers, func(i int) string {
		if i%3 == 2 {
			// A flooder that connects and leaves at once.
			if conn, err := net.Dial("unix", path); err == nil {
				conn.Close()
			}
			return "defer"
		}
		got, err := eximSees(path, request("alice", "pw"))
		if got != "defer" {
			got = got + " (" + err.Error() + ")"
		}
		return got
	})
	for _, got := range seen {
		if got != "defer" {
			t.Fatalf("a refused client: Exim would see %q, want defer", got)
		}
	}
	waitFor(t, func() bool { return testutil.ToFloat64(metrics.refused) == clients })
	if err := serve.stop(); err != nil {
		t.Fatal(err)
	}
	maxLines := 2 + int(time.Since(start)/server.RepeatLogInterval)
	if n := log.lines("uid not allowed"); n > maxLines || n < 2 {
		t.Fatalf("%d log lines for %d refusals, want 2 (at most %d):\n%.2000s", n, clients, maxLines, log.String())
	}
	if !strings.Contains(log.String(), "count="+strconv.Itoa(clients-1)) {
		t.Errorf("the summary line does not count the %d refusals after the first:\n%s", clients-1, log.String())
	}
}

// TestConnectionsOverThePerUIDCapGetDeferAtOnce: idle connections of one
// uid take its slots; the next gets defer at once (not after the read
// time-out) and a slot given back is taken again.
func TestConnectionsOverThePerUIDCapGetDeferAtOnce(t *testing.T) {
	metrics := NewMetrics(prometheus.NewRegistry())
	server := &Server{Checker: &passwords{valid: map[string]string{"alice": "pw"}}, Metrics: metrics,
		MaxConnections: 3, MaxConnectionsPerUID: 2, ReadTimeout: time.Hour}
	path := startDaemon(t, server)
	var idle []net.Conn
	for range 2 {
		conn, err := net.Dial("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		idle = append(idle, conn)
	}
	waitFor(t, func() bool { return testutil.ToFloat64(metrics.open) == 2 })
	if got, err := eximSees(path, request("alice", "pw")); got != "defer" {
		t.Fatalf("third connection of the uid: Exim would see %q (%v), want defer at once", got, err)
	}
	if n := testutil.ToFloat64(metrics.overcap.WithLabelValues("per_uid")); n != 1 {
		t.Fatalf("over_limit{per_uid} = %v, want 1", n)
	}
	idle[0].Close()
	waitFor(t, func() bool { return testutil.ToFloat64(metrics.open) == 1 })
	if got, err := eximSees(path, request("alice", "pw")); got != "yes" {
		t.Fatalf("after a slot was given back: %q (%v), want yes", got, err)
	}
	if limit := testutil.ToFloat64(metrics.limit.WithLabelValues("per_uid")); limit != 2 {
		t.Errorf("connection_limit{per_uid} = %v, want 2", limit)
	}
}

// testClock is a clock that moves only when the test says.
type testClock struct{ now time.Time }

func (c *testClock) Now() time.Time          { return c.now }
func (c *testClock) advance(d time.Duration) { c.now = c.now.Add(d) }

// newTestBurstLog is a burstLog of "refused" events, a minute apart,
// writing text lines to out and reading the time from clock.
func newTestBurstLog() (l *burstLog, out *bytes.Buffer, clock *testClock) {
	out, clock = &bytes.Buffer{}, &testClock{now: time.Unix(1_000_000, 0)}
	l = newBurstLog(slog.New(slog.NewTextHandler(out, nil)), slog.LevelWarn, "refused", time.Minute)
	l.now = clock.Now
	return l, out, clock
}

// TestBurstLogWritesTheFirstAtOnceAndTheRestAsACount uses a clock of its
// own: no line depends on real time passing.
func TestBurstLogWritesTheFirstAtOnceAndTheRestAsACount(t *testing.T) {
	l, out, clock := newTestBurstLog()
	l.note(1001, "uid", uint32(1001))
	for i := range 500 {
		l.note(uint32(2000+i%12), "uid", uint32(2000+i%12))
	}
	if lines := strings.Count(out.String(), "\n"); lines != 1 {
		t.Fatalf("%d lines within the interval, want 1:\n%s", lines, out)
	}
	clock.advance(30 * time.Second)
	l.close() // the daemon stops: the count is written
	summary := out.String()[strings.Index(out.String(), "\n")+1:]
	for _, want := range []string{`msg="refused (repeated)"`, "count=500", "since=30s", `uids="2000:42 2001:42`, "others:164"} {
		if !strings.Contains(summary, want) {
			t.Errorf("summary lacks %s: %s", want, summary)
		}
	}
	if strings.Count(summary, " 20") > maxUIDsNamed+1 {
		t.Errorf("summary names more than %d uids: %s", maxUIDsNamed, summary)
	}
}

// TestBurstLogWritesAnEventAfterAQuietIntervalAtOnce: a refusal after a
// quiet minute is logged with its details again.
func TestBurstLogWritesAnEventAfterAQuietIntervalAtOnce(t *testing.T) {
	l, out, clock := newTestBurstLog()
	l.note(1, "uid", uint32(1))
	clock.advance(2 * time.Minute)
	l.note(2, "uid", uint32(2))
	if got := out.String(); strings.Count(got, "\n") != 2 || !strings.Contains(got, "uid=2") {
		t.Fatalf("want two lines, the second with uid=2:\n%s", got)
	}
	l.close()
	if strings.Count(out.String(), "\n") != 2 {
		t.Fatalf("close wrote a count of nothing:\n%s", out)
	}
}

// TestHangUpNeverResetsAClientThatWroteLate drives the close sequence with
// clients that write after the daemon answered: Exim must see "defer" or
// its fail string, never the empty string of a reset connection.
func TestHangUpNeverResetsAClientThatWroteLate(t *testing.T) {
	path := socketPath(t)
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		drain := make([]byte, 16<<10) // as the accept loop's
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			hangUp(conn.(*net.UnixConn), "defer", drain)
		}
	}()
	// A request larger than the drain buffer, written in two parts.
	big := strings.Repeat("A", 100_000) + "\n"
	for i := range 300 {
		conn, err := net.Dial("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		_, writeErr := io.WriteString(conn, big[:i*300])
		if writeErr == nil {
			_, writeErr = io.WriteString(conn, big[i*300:])
		}
		conn.(*net.UnixConn).CloseWrite()
		reply, readErr := io.ReadAll(conn)
		conn.Close()
		switch {
		case writeErr != nil: // Exim: its fail string, defer
		case readErr != nil || string(reply) != "defer":
			t.Fatalf("client %d: read %q, %v; want defer and the end of input", i, reply, readErr)
		}
	}
}

// TestServingIsCalledOnceServeIsSetUp: Serving (where the daemon logs
// "serving") comes after Serve took its limits from the descriptor limit
// and its spare descriptor: a test or an admin that lowers the limit once
// the daemon says it serves used to find Serve still starting, its limits
// computed from the lowered value ("leaves no room"), the daemon gone.
func TestServingIsCalledOnceServeIsSetUp(t *testing.T) {
	devNulls := func() int {
		entries, _ := os.ReadDir("/proc/self/fd")
		n := 0
		for _, entry := range entries {
			if target, _ := os.Readlink("/proc/self/fd/" + entry.Name()); target == "/dev/null" {
				n++
			}
		}
		return n
	}
	before := devNulls()
	metrics := NewMetrics(prometheus.NewRegistry())
	served := make(chan ConnectionLimits, 1)
	var sparesThen int
	server := &Server{Checker: &passwords{valid: map[string]string{"alice": "pw"}}, Metrics: metrics, MaxConnections: 7,
		Serving: func(limits ConnectionLimits) {
			sparesThen = devNulls() - before
			served <- limits
		}}
	path := startDaemon(t, server)
	limits := <-served
	if limits.Total != 7 || testutil.ToFloat64(metrics.limit.WithLabelValues("total")) != 7 {
		t.Fatalf("Serving got %+v (metric %v), want the limits in force (total 7)", limits, testutil.ToFloat64(metrics.limit.WithLabelValues("total")))
	}
	if sparesThen != 1 {
		t.Fatalf("%d spare descriptors open when Serving was called, want 1", sparesThen)
	}
	if got := ask(t, path, request("alice", "pw")); got != "yes" {
		t.Fatalf("first request after Serving: %q, want yes", got)
	}
}
