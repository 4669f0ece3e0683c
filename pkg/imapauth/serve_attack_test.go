package imapauth

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/opsctl/opsctl/internal/testenv"
)

// Attacks on `opsctl imap-auth serve` made with real peers: Dovecot behind
// it, a client that speaks as Exim does in front.

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

// waitForLog waits until the daemon's log holds want.
func waitForLog(t *testing.T, p *daemonProcess, want string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(p.stderr.String(), want) {
		select {
		case <-p.exited:
			t.Fatalf("serve exited: %s", p.stderr)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve did not log %q within 15s: %s", want, p.stderr)
		}
		time.Sleep(20 * time.Millisecond)
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

// TestServeMetricsEndpointHoldsFewConnections: a local user opens many
// idle connections to the metrics port. The daemon takes only a few; the
// rest wait in the kernel's listen queue, costing it no descriptor.
func TestServeMetricsEndpointHoldsFewConnections(t *testing.T) {
	d, pki := dovecotWithAllCerts(t)
	socket := filepath.Join(worldReadableTempDir(t), "imap-auth.sock")
	port := freePort(t)
	metricsAddr := "127.0.0.1:" + strconv.Itoa(port)
	p := serveUnderLimit(t, 1024, socket, "--server", d.Implicit("127.0.0.1"), "--ca-file", pki.CAFile,
		"--metrics-listen", metricsAddr)
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
