package imapauth

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/opsctl/opsctl/internal/testenv"
)

// BenchmarkIMAPLogins compares, against one Dovecot in its high-performance
// mode, b.N sequential successful logins by each of
//
//	perl:  the old helper, Net::IMAP::Simple in one long-lived Perl
//	       interpreter (as Exim's embedded Perl ran it), verifying the
//	       certificate with the test CA;
//	check: `opsctl imap-auth check` spawned per login, as ${run} does;
//	serve: requests to `opsctl imap-auth serve` (its defaults, no cache),
//	       as ${readsocket} does,
//
// and prints median and p99 latency and the ratios. The methods take turns
// login by login, so a machine busy with other work slows all of them
// alike. `make bench-imap` runs it with -benchtime 200x.
func BenchmarkIMAPLogins(b *testing.B) {
	perl := testenv.Need(b, "perl", "perl-base")
	testenv.Need(b, "/usr/share/perl5/Net/IMAP/Simple.pm", "libnet-imap-simple-perl")
	pki := newTestPKI(b)
	d := startDovecot(b, dovecotOptions{certs: map[string]pair{"": pki.good(b)}, fast: true})
	server := d.Implicit("127.0.0.1")
	user, password := "alice", dovecotUsers["alice"]
	script, _ := filepath.Abs("testdata/bench/net-imap-simple-loop.pl")

	socket := filepath.Join(b.TempDir(), "bench.sock")
	serve := exec.Command(testenv.Opsctl(b), "imap-auth", "serve", "--socket", socket, "--server", server, "--ca-file", pki.CAFile, "--log-level", "warn")
	var serveErr testenv.SyncBuffer
	serve.Stderr = &serveErr
	if err := serve.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { serve.Process.Kill(); serve.Wait() }()
	served := testenv.WaitUntil(b, 10*time.Second, func() bool {
		conn, err := net.Dial("unix", socket)
		if err == nil {
			conn.Close()
		}
		return err == nil
	})
	if !served {
		b.Fatalf("serve did not start: %s", serveErr.String())
	}

	perlLoop := exec.Command(perl, script, server, pki.CAFile, "127.0.0.1", user)
	var perlErr testenv.SyncBuffer
	perlLoop.Stderr = &perlErr
	perlIn, _ := perlLoop.StdinPipe()
	perlOutPipe, _ := perlLoop.StdoutPipe()
	if err := perlLoop.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { perlIn.Close(); perlLoop.Wait() }()
	perlOut := bufio.NewReader(perlOutPipe)
	io.WriteString(perlIn, password+"\n")

	methods := []struct {
		name  string
		login func() (time.Duration, error)
	}{
		{"perl", func() (time.Duration, error) {
			// Timed inside Perl: the pipe to it is not part of the old helper.
			io.WriteString(perlIn, "\n")
			line, err := perlOut.ReadString('\n')
			if err != nil {
				return 0, fmt.Errorf("perl loop: %v: %s", err, perlErr.String())
			}
			us, err := strconv.Atoi(strings.TrimSpace(line))
			return time.Duration(us) * time.Microsecond, err
		}},
		{"check", func() (time.Duration, error) {
			start := time.Now()
			cmd := exec.Command(testenv.Opsctl(b), "imap-auth", "check", "--server", server, "--ca-file", pki.CAFile, "--password-stdin", user)
			cmd.Stdin = strings.NewReader(password + "\n")
			out, err := cmd.Output()
			if err != nil || string(out) != "yes\n" {
				return 0, fmt.Errorf("check: %q %v %s", out, err, stderrOf(err))
			}
			return time.Since(start), nil
		}},
		{"serve", func() (time.Duration, error) {
			start := time.Now()
			reply, err := askErr(socket, request(user, password))
			if err != nil || reply != "yes" {
				return 0, fmt.Errorf("serve: %q %v %s", reply, err, serveErr.String())
			}
			return time.Since(start), nil
		}},
	}

	latencies := make([][]time.Duration, len(methods))
	b.ResetTimer()
	for round := range b.N {
		for k := range methods {
			m := (round + k) % len(methods) // each method first in turn
			took, err := methods[m].login()
			if err != nil {
				b.Fatal(err)
			}
			latencies[m] = append(latencies[m], took)
		}
	}
	b.StopTimer()

	perlMedian := percentile(latencies[0], 50)
	for m, method := range methods {
		b.ReportMetric(float64(percentile(latencies[m], 50).Microseconds())/1000, method.name+"-median-ms")
	}
	if b.N < 10 {
		return // the calibration run
	}
	var report strings.Builder
	fmt.Fprintf(&report, "\n%d sequential successful logins per method, taking turns; Dovecot %s, high-performance mode\n", b.N, dovecotVersion())
	fmt.Fprintf(&report, "%-7s %10s %10s %16s\n", "method", "median", "p99", "perl/method")
	for m, method := range methods {
		median := percentile(latencies[m], 50)
		fmt.Fprintf(&report, "%-7s %10s %10s %15.2fx\n", method.name, median.Round(10*time.Microsecond), percentile(latencies[m], 99).Round(10*time.Microsecond), float64(perlMedian)/float64(median))
	}
	speedup := float64(perlMedian) / float64(percentile(latencies[2], 50))
	verdict := "met"
	if speedup < 1.5 {
		verdict = "NOT met"
	}
	fmt.Fprintf(&report, "target: serve at least 1.5x faster than perl per login (median): %s, %.2fx\n", verdict, speedup)
	fmt.Print(report.String())
}

// percentile returns the p-th percentile (nearest rank) of took.
func percentile(took []time.Duration, p int) time.Duration {
	if len(took) == 0 {
		return 0
	}
	sorted := slices.Clone(took)
	slices.Sort(sorted)
	rank := (p*len(sorted) + 99) / 100
	return sorted[max(rank, 1)-1]
}

func stderrOf(err error) string {
	if exitErr, ok := err.(*exec.ExitError); ok {
		return string(exitErr.Stderr)
	}
	return ""
}

func dovecotVersion() string {
	out, err := exec.Command("dovecot", "--version").Output()
	if err != nil {
		return "?"
	}
	return strings.Fields(string(out))[0]
}

func TestPercentileIsNearestRank(t *testing.T) {
	var took []time.Duration
	for i := 1; i <= 200; i++ {
		took = append(took, time.Duration(i))
	}
	if percentile(took, 50) != 100 || percentile(took, 99) != 198 || percentile(took[:1], 99) != 1 {
		t.Fatalf("median %d p99 %d", percentile(took, 50), percentile(took, 99))
	}
}
