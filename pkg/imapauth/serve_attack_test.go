package imapauth

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/smtp"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/opsctl/opsctl/internal/testenv"
)

// The attacks of issue 19, item 7, made on `opsctl imap-auth serve` with
// real peers: Dovecot behind it, Exim (or a client that speaks as Exim
// does) in front, and local users of other uids (the test binary run with
// another uid) attacking the socket.

// Local users the attacks run as. The tests run as root.
const (
	attackerUID = 65533
	otherUID    = 65532
	nogroupGID  = 65534
)

// serveUnderLimit starts `imap-auth serve` with args and its descriptor
// limit set to nofile (soft and hard, so that the daemon cannot raise it)
// and waits until it says it serves.
func serveUnderLimit(t *testing.T, nofile int, socket string, args ...string) *daemonProcess {
	t.Helper()
	prlimit := testenv.Need(t, "prlimit", "util-linux")
	argv := append([]string{fmt.Sprintf("--nofile=%d:%d", nofile, nofile), "--", testenv.Opsctl(t),
		"imap-auth", "serve", "--socket", socket}, args...)
	p := startServe(t, exec.Command(prlimit, argv...)) // prlimit execs opsctl: same pid
	waitForLog(t, p, `msg=serving `)
	return p
}

// dovecotServe is `imap-auth serve` under a descriptor limit, in front of
// the Dovecot of dovecotWithAllCerts, serving metrics.
type dovecotServe struct {
	*daemonProcess
	dovecot *dovecot
	pki     *testPKI
	// dir is world-readable: clients of other uids reach the socket and
	// the copy of the test binary they run there.
	dir, socket string
	metricsPort int
	metrics     string // 127.0.0.1:metricsPort
}

// serveDovecotUnderLimit starts Dovecot and `imap-auth serve` in front of
// it (serveUnderLimit) with --server, --ca-file, --metrics-listen and args.
func serveDovecotUnderLimit(t *testing.T, nofile int, args ...string) *dovecotServe {
	t.Helper()
	d, pki := dovecotWithAllCerts(t)
	dir := worldReadableTempDir(t)
	s := &dovecotServe{dovecot: d, pki: pki, dir: dir, socket: filepath.Join(dir, "imap-auth.sock"), metricsPort: freePort(t)}
	s.metrics = "127.0.0.1:" + strconv.Itoa(s.metricsPort)
	s.daemonProcess = serveUnderLimit(t, nofile, s.socket, append([]string{"--server", d.Implicit("127.0.0.1"),
		"--ca-file", pki.CAFile, "--metrics-listen", s.metrics}, args...)...)
	return s
}

// waitForLog waits until the daemon's log holds want.
func waitForLog(t *testing.T, p *daemonProcess, want string) {
	t.Helper()
	logged := testenv.WaitUntil(t, 15*time.Second, func() bool {
		if strings.Contains(p.stderr.String(), want) {
			return true
		}
		select {
		case <-p.exited:
			t.Fatalf("serve exited: %s", p.stderr)
		default:
		}
		return false
	})
	if !logged {
		t.Fatalf("serve did not log %q within 15s: %s", want, p.stderr)
	}
}

// scrape returns the value of every series of the daemon's /metrics, by
// its name and labels as written there (`name{label="v"}`).
func scrape(t *testing.T, addr string) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	series := map[string]float64{}
	scanner := bufio.NewScanner(resp.Body)
	for scanner.Scan() {
		line := scanner.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		name, value, ok := strings.Cut(line, " ")
		if v, err := strconv.ParseFloat(value, 64); ok && err == nil {
			series[name] = v
		}
	}
	return series
}

// metric returns one series, failing when the daemon does not have it.
func metric(t *testing.T, addr, name string) float64 {
	t.Helper()
	v, ok := scrape(t, addr)[name]
	if !ok {
		t.Fatalf("the daemon's /metrics has no %s", name)
	}
	return v
}

// flooder is the test binary running TestHelperFlood as another uid.
type flooder struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	output *bufio.Reader
	done   bool
}

// startFlood starts a flooder as uid against the socket at path and waits
// until it reports ready. mode "churn" connects, writes a request and
// hangs up as fast as it can, keeping its last 32 connections per worker
// open; "idle" opens count connections, sends nothing and keeps them.
func startFlood(t *testing.T, testBinary string, uid uint32, path, mode string, count int) *flooder {
	t.Helper()
	cmd := exec.Command(testBinary, "-test.run=^TestHelperFlood$", "-test.count=1")
	cmd.Env = append(os.Environ(), "OPSCTL_TEST_FLOOD_SOCKET="+path, "OPSCTL_TEST_FLOOD_MODE="+mode,
		"OPSCTL_TEST_FLOOD_COUNT="+strconv.Itoa(count))
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: nogroupGID}}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	f := &flooder{cmd: cmd, stdin: stdin, output: bufio.NewReader(stdout)}
	t.Cleanup(func() { f.stop(t) })
	for {
		line, err := f.output.ReadString('\n')
		if err != nil {
			t.Fatalf("flooder as uid %d ended before it was ready: %v", uid, err)
		}
		if strings.HasPrefix(line, "ready") {
			t.Logf("flooder as uid %d: %s", uid, strings.TrimSpace(line))
			return f
		}
	}
}

// stop ends the flood (the flooder stops when its stdin closes) and
// returns its last report.
func (f *flooder) stop(t *testing.T) string {
	if f.done {
		return ""
	}
	f.done = true
	f.stdin.Close()
	rest, _ := io.ReadAll(f.output)
	if err := f.cmd.Wait(); err != nil {
		t.Errorf("flooder: %v\n%s", err, rest)
	}
	return strings.TrimSpace(string(rest))
}

// TestHelperFlood is the flooder process of startFlood.
func TestHelperFlood(t *testing.T) {
	path := os.Getenv("OPSCTL_TEST_FLOOD_SOCKET")
	if path == "" {
		t.Skip("helper process of startFlood, not a test by itself")
	}
	stop := make(chan struct{})
	go func() { io.Copy(io.Discard, os.Stdin); close(stop) }()
	raw := request("mallory", "guess")
	switch os.Getenv("OPSCTL_TEST_FLOOD_MODE") {
	case "idle":
		count, _ := strconv.Atoi(os.Getenv("OPSCTL_TEST_FLOOD_COUNT"))
		var held []net.Conn
		failed := 0
		for range count {
			conn, err := net.Dial("unix", path)
			if err != nil {
				failed++
				continue
			}
			held = append(held, conn)
		}
		fmt.Printf("ready opened=%d failed=%d\n", len(held), failed)
		<-stop
		for _, conn := range held {
			conn.Close()
		}
	case "churn":
		var made, failed atomic.Int64
		var wg sync.WaitGroup
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var ring [32]net.Conn
				for i := 0; ; i++ {
					select {
					case <-stop:
						for _, conn := range ring {
							if conn != nil {
								conn.Close()
							}
						}
						return
					default:
					}
					conn, err := net.Dial("unix", path)
					if err != nil {
						failed.Add(1)
						continue
					}
					made.Add(1)
					io.WriteString(conn, raw)
					if old := ring[i%len(ring)]; old != nil {
						old.Close()
					}
					ring[i%len(ring)] = conn
				}
			}()
		}
		fmt.Println("ready")
		wg.Wait()
		fmt.Printf("made=%d failed=%d\n", made.Load(), failed.Load())
	}
}

// TestServeAnswersEximWhileARefusedUIDFloods: a local user whose uid is
// not allowed floods the socket (connect, write, hang up, some connections
// kept open) while Exim authenticates SMTP users through the daemon. Exim
// still gets Dovecot's answers, and the daemon's log stays a few lines
// however many clients it refused. The daemon runs with 256 descriptors:
// refused clients must not hold any.
func TestServeAnswersEximWhileARefusedUIDFloods(t *testing.T) {
	p := serveDovecotUnderLimit(t, 256, "--allow-uid", "Debian-exim")
	socket, metricsAddr := p.socket, p.metrics
	start := time.Now()
	e := eximForSocket(t, p.pki, socket)

	testBinary := copyExecutable(t, os.Args[0], p.dir)
	flood := startFlood(t, testBinary, attackerUID, socket, "churn", 0)
	const refusedMetric = "opsctl_imap_auth_refused_clients_total"
	waitFor(t, func() bool { return metric(t, metricsAddr, refusedMetric) >= 1000 })
	before := metric(t, metricsAddr, refusedMetric)
	for i := range 5 {
		if got := e.login(t, smtp.PlainAuth("", "alice", dovecotUsers["alice"], "127.0.0.1")); got != 235 {
			t.Fatalf("login %d during the flood: AUTH answered %d, want 235\n%s\n%s", i, got, e.log(), p.stderr)
		}
	}
	if got := e.login(t, smtp.PlainAuth("", "alice", "wrong", "127.0.0.1")); got != 535 {
		t.Fatalf("wrong password during the flood: AUTH answered %d, want 535", got)
	}
	after := metric(t, metricsAddr, refusedMetric)
	t.Logf("flooder: %s", flood.stop(t))
	if after <= before {
		t.Fatalf("the flood was over before the logins (%v refusals before them, %v after)", before, after)
	}

	p.cmd.Process.Signal(syscall.SIGTERM)
	<-p.exited
	// The first refusal, then one line with the count per minute.
	lines := strings.Count(p.stderr.String(), "uid not allowed")
	if maxLines := 2 + int(time.Since(start)/time.Minute); lines > maxLines || lines == 0 {
		t.Fatalf("%d log lines about refused clients for %v refusals, want 1 to %d:\n%.3000s", lines, after, maxLines, p.stderr)
	}
	t.Logf("%v refused connections, %d log lines", after, lines)
}

// TestServeIdleConnectionsOfOneAllowedUIDLeaveRoomForAnother: an allowed
// uid opens more idle connections than the daemon has descriptors; root,
// also allowed, still gets Dovecot's answer at once, and the connections
// over the per-uid cap were answered defer at once.
func TestServeIdleConnectionsOfOneAllowedUIDLeaveRoomForAnother(t *testing.T) {
	p := serveDovecotUnderLimit(t, 256, "--allow-uid", "root", "--allow-uid", strconv.Itoa(attackerUID))
	socket, metricsAddr := p.socket, p.metrics

	const idle = 300
	testBinary := copyExecutable(t, os.Args[0], p.dir)
	startFlood(t, testBinary, attackerUID, socket, "idle", idle)
	// Within the daemon's 10s read time-out of the idle connections.
	if got, err := eximSeesWithin(socket, request("alice", dovecotUsers["alice"]), 5*time.Second); got != "yes" {
		t.Fatalf("root while uid %d holds %d idle connections: %q (%v), want yes\n%s", attackerUID, idle, got, err, p.stderr)
	}
	perUID := metric(t, metricsAddr, `opsctl_imap_auth_connection_limit{limit="per_uid"}`)
	total := metric(t, metricsAddr, `opsctl_imap_auth_connection_limit{limit="total"}`)
	if perUID < 1 || perUID > total/2 || total > 256 {
		t.Fatalf("caps total %v, per uid %v under a limit of 256 descriptors", total, perUID)
	}
	overCap := `opsctl_imap_auth_connections_over_limit_total{limit="per_uid"}`
	waitFor(t, func() bool { return metric(t, metricsAddr, overCap) >= idle-perUID })
	if n := metric(t, metricsAddr, overCap); n != idle-perUID {
		t.Errorf("%v connections over the per-uid cap of %v, want %v", n, perUID, idle-perUID)
	}
	if lines := strings.Count(p.stderr.String(), "connection limit of one uid reached"); lines != 1 {
		t.Errorf("%d log lines about the per-uid cap, want 1 (the rest is counted at the next minute):\n%s", lines, p.stderr)
	}
}

// TestServeTotalConnectionCapCoversEveryUID: with the caps given as
// flags, two allowed uids fill the total between them; a third allowed
// uid then gets defer at once, not a hang, and so does root.
func TestServeTotalConnectionCapCoversEveryUID(t *testing.T) {
	p := serveDovecotUnderLimit(t, 1024, "--allow-uid", "root", "--allow-uid", strconv.Itoa(attackerUID), "--allow-uid", strconv.Itoa(otherUID),
		"--max-connections", "50", "--max-connections-per-uid", "30")
	socket, metricsAddr := p.socket, p.metrics
	testBinary := copyExecutable(t, os.Args[0], p.dir)
	startFlood(t, testBinary, attackerUID, socket, "idle", 30)
	startFlood(t, testBinary, otherUID, socket, "idle", 30)
	overTotal := `opsctl_imap_auth_connections_over_limit_total{limit="total"}`
	waitFor(t, func() bool { return metric(t, metricsAddr, overTotal) >= 10 })
	if got, err := eximSeesWithin(socket, request("alice", dovecotUsers["alice"]), 5*time.Second); got != "defer" {
		t.Fatalf("root with all 50 connections taken: %q (%v), want defer at once", got, err)
	}
	series := scrape(t, metricsAddr)
	if series[overTotal] != 11 || series[`opsctl_imap_auth_connections_over_limit_total{limit="per_uid"}`] != 0 ||
		series["opsctl_imap_auth_open_connections"] != 50 {
		t.Errorf("over total %v (want 11), over per uid %v (want 0), open %v (want 50)", series[overTotal],
			series[`opsctl_imap_auth_connections_over_limit_total{limit="per_uid"}`], series["opsctl_imap_auth_open_connections"])
	}
	if !strings.Contains(p.stderr.String(), "max_connections=50 max_connections_per_uid=30") {
		t.Errorf("the start line does not give the caps:\n%s", p.stderr)
	}
}

// TestServeOutOfDescriptorsAnswersDeferAndRecovers takes the daemon's
// last free descriptor away (its limit lowered to the lowest descriptor
// number it does not use): accept(2) fails with EMFILE. Clients must get
// defer at once, not wait in the listen queue; the accept loop must not
// spin or die, and once descriptors are back the daemon answers again.
func TestServeOutOfDescriptorsAnswersDeferAndRecovers(t *testing.T) {
	// --warm 0: no connection to Dovecot opens or closes in the background.
	p := serveDovecotUnderLimit(t, 1024, "--warm", "0")
	socket, metricsAddr := p.socket, p.metrics
	pid := p.cmd.Process.Pid
	start := time.Now()

	var saved unix.Rlimit
	if err := unix.Prlimit(pid, unix.RLIMIT_NOFILE, nil, &saved); err != nil {
		t.Fatal(err)
	}
	lowered := unix.Rlimit{Cur: uint64(lowestFreeDescriptor(t, pid)), Max: saved.Max}
	if err := unix.Prlimit(pid, unix.RLIMIT_NOFILE, &lowered, nil); err != nil {
		t.Fatal(err)
	}
	const clients = 20
	replies := inParallel(clients, clients, func(int) string {
		got, err := eximSeesWithin(socket, request("alice", dovecotUsers["alice"]), 5*time.Second)
		if got != "defer" {
			got = fmt.Sprintf("%q (%v)", got, err)
		}
		return got
	})
	for _, got := range replies {
		if got != "defer" {
			t.Errorf("client while the daemon has no descriptor: Exim would see %s, want defer", got)
		}
	}

	if err := unix.Prlimit(pid, unix.RLIMIT_NOFILE, &saved, nil); err != nil {
		t.Fatal(err)
	}
	if got, err := eximSeesWithin(socket, request("alice", dovecotUsers["alice"]), 5*time.Second); got != "yes" {
		t.Fatalf("with descriptors back: %q (%v), want yes\n%s", got, err, p.stderr)
	}
	series := scrape(t, metricsAddr)
	if n := series[`opsctl_imap_auth_connections_over_limit_total{limit="descriptors"}`]; n != clients {
		t.Errorf("%v clients counted as turned away for want of descriptors, want %d", n, clients)
	}
	// Each failed accept that could not be answered is counted: a loop
	// spinning on EMFILE would count thousands.
	if n := series["opsctl_imap_auth_accept_errors_total"]; n > 2 {
		t.Errorf("%v failed accepts retried, want at most 2 (a spinning accept loop?)", n)
	}
	lines := strings.Count(p.stderr.String(), "out of file descriptors")
	if maxLines := 1 + int(time.Since(start)/time.Minute); lines == 0 || lines > maxLines {
		t.Errorf("%d log lines about missing descriptors, want 1 to %d:\n%s", lines, maxLines, p.stderr)
	}
}

// lowestFreeDescriptor is the lowest descriptor number process pid does
// not use: with its limit set there, it can open nothing more.
func lowestFreeDescriptor(t *testing.T, pid int) int {
	t.Helper()
	entries, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	used := map[int]bool{}
	for _, entry := range entries {
		n, _ := strconv.Atoi(entry.Name())
		used[n] = true
	}
	for n := 0; ; n++ {
		if !used[n] {
			return n
		}
	}
}

// TestServeMetricsEndpointHoldsFewConnections: a local user opens many
// idle connections to the metrics port. The daemon takes only a few; the
// rest wait in the kernel's listen queue, costing it no descriptor.
func TestServeMetricsEndpointHoldsFewConnections(t *testing.T) {
	p := serveDovecotUnderLimit(t, 1024)
	socket, metricsAddr, port := p.socket, p.metrics, p.metricsPort
	const idle = 40
	var conns []net.Conn
	for range idle {
		conn, err := net.Dial("tcp", metricsAddr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, conn)
	}
	// The connections the daemon has not accepted are counted in the
	// listening socket's accept queue (rx_queue in /proc/net/tcp).
	waitFor(t, func() bool { return acceptQueue(t, port) >= idle-8 })
	if got := ask(t, socket, request("alice", dovecotUsers["alice"])); got != "yes" {
		t.Fatalf("login while the metrics port is flooded: %q\n%s", got, p.stderr)
	}
	for _, conn := range conns {
		conn.Close()
	}
	if n := metric(t, metricsAddr, `opsctl_imap_auth_requests_total{result="yes",source="imap"}`); n != 1 {
		t.Errorf("yes counted %v times, want 1", n)
	}
}

// acceptQueue returns the connections waiting in the accept queue of the
// socket listening on 127.0.0.1:port.
func acceptQueue(t *testing.T, port int) int {
	t.Helper()
	data, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		t.Fatal(err)
	}
	local := fmt.Sprintf("0100007F:%04X", port)
	for _, line := range strings.Split(string(data), "\n")[1:] {
		fields := strings.Fields(line)
		if len(fields) > 4 && fields[1] == local && fields[3] == "0A" { // 0A: LISTEN
			_, rx, _ := strings.Cut(fields[4], ":")
			n, _ := strconv.ParseInt(rx, 16, 64)
			return int(n)
		}
	}
	t.Fatalf("nothing listens on %s in /proc/net/tcp", local)
	return 0
}
