// Command sockbench measures `opsctl sock capture` against a direct UNIX
// connection and against the socat chain with tcpdump that it replaces,
// in one run on the same machine, and prints MB/s and ratios.
//
//	go run ./pkg/sockspy/internal/sockbench -opsctl bin/opsctl -size 1GiB -conns 1,4
package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"

	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

func main() {
	opsctl := flag.String("opsctl", "bin/opsctl", "opsctl binary")
	sizeFlag := flag.String("size", "1GiB", "bytes sent per run, split over the connections (k/M/GiB suffixes)")
	connsFlag := flag.String("conns", "1,4", "comma-separated connection counts")
	ioFlag := flag.String("io", "256KiB,64KiB,8KiB", "comma-separated sizes of the clients' writes and the server's reads (at most 1MiB)")
	skipSocat := flag.Bool("no-socat", false, "skip the socat chain")
	outDir := flag.String("out", "", "folder for the capture files (default: a temporary folder)")
	withCopy := flag.Bool("copy", true, "also measure opsctl with splice disabled (OPSCTL_SOCK_NOSPLICE=1)")
	flag.BoolVar(&warmUp, "warm", true, "before each run that fills a file, write and delete as much in the same folder")
	flag.Parse()
	size, err := parseSize(*sizeFlag)
	if err != nil {
		fail(err)
	}
	dir, err := os.MkdirTemp("", "sockbench-")
	if err != nil {
		fail(err)
	}
	defer os.RemoveAll(dir)
	if *outDir == "" {
		*outDir = dir
	}
	captures = *outDir

	var ioSizes []int
	for _, f := range strings.Split(*ioFlag, ",") {
		n, err := parseSize(strings.TrimSpace(f))
		if err != nil || n > int64(len(payload)) {
			fail(fmt.Errorf("-io %q: expected sizes of at most 1MiB", *ioFlag))
		}
		ioSizes = append(ioSizes, int(n))
	}

	fmt.Printf("sockbench: %s per run, %s; GOMAXPROCS host CPUs=%d\n", *sizeFlag, dir, numCPU())
	for _, ioSize := range ioSizes {
		fmt.Printf("\nclients write and the server reads %s at a time\n", ioSizeName(ioSize))
		fmt.Printf("%-28s %5s %10s %9s %9s  %s\n", "path", "conns", "MB/s", "/direct", "/socat", "notes")
		for _, f := range strings.Split(*connsFlag, ",") {
			conns, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || conns < 1 {
				fail(fmt.Errorf("-conns %q: expected positive numbers", *connsFlag))
			}
			srv := filepath.Join(dir, "srv.sock")
			sink, err := startSink(srv, ioSize)
			if err != nil {
				fail(err)
			}
			cpu0 := selfCPU()
			direct, err := transfer(srv, sink, size, conns)
			directCPU := selfCPU() - cpu0
			if err != nil {
				fail(fmt.Errorf("direct: %w", err))
			}
			var socat float64
			var socatNote string
			if !*skipSocat {
				warm(size)
				socat, socatNote, err = viaSocat(dir, srv, sink, size, conns)
				if err != nil {
					fail(fmt.Errorf("socat chain: %w", err))
				}
			}
			warm(size)
			ops, opsNote, err := viaOpsctl(*opsctl, dir, srv, sink, size, conns, false, "")
			if err != nil {
				fail(fmt.Errorf("opsctl: %w", err))
			}
			row := func(name string, mbs float64, note string) {
				vsSocat := "-"
				if socat > 0 {
					vsSocat = fmt.Sprintf("%.2fx", mbs/socat)
				}
				fmt.Printf("%-28s %5d %10.0f %8.0f%% %9s  %s\n", name, conns, mbs, 100*mbs/direct, vsSocat, note)
			}
			row("direct", direct, fmt.Sprintf("client and server used %.2f CPU-s", directCPU.Seconds()))
			if socat > 0 {
				row("socat chain + tcpdump", socat, socatNote)
			}
			row("opsctl capture (splice)", ops, opsNote)
			null, nullNote, err := viaOpsctl(*opsctl, dir, srv, sink, size, conns, false, "/dev/null")
			if err != nil {
				fail(fmt.Errorf("opsctl to /dev/null: %w", err))
			}
			row("opsctl -w /dev/null", null, "forwarding alone, no file to fill; "+nullNote[strings.Index(nullNote, "opsctl used"):])
			warm(size)
			ceiling, err := fileWrite(size)
			if err != nil {
				fail(fmt.Errorf("file write: %w", err))
			}
			row("file write, 1 MiB blocks", ceiling, "ceiling of any capture: one copy into the page cache")
			if *withCopy {
				warm(size)
				cp, cpNote, err := viaOpsctl(*opsctl, dir, srv, sink, size, conns, true, "")
				if err != nil {
					fail(fmt.Errorf("opsctl copy: %w", err))
				}
				row("opsctl capture (copy)", cp, cpNote)
			}
			sink.ln.Close()
		}
	}
}

func ioSizeName(n int) string {
	if n%(1<<10) == 0 {
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}

// selfCPU is the CPU time this process (the benchmark's clients and
// server) has used so far.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// captures is the folder the capture files go to.
var captures string

// warmUp: every run that fills a file first gets memory that was recently
// used. On a virtual machine whose host backs guest memory lazily, writing
// into pages the guest has not touched lately runs many times slower than
// into recycled ones (here 0.4 against 3 GB/s), and whichever run came
// first would pay for the others.
var warmUp bool

func warm(size int64) {
	if warmUp {
		if _, err := fileWrite(size); err != nil {
			fail(fmt.Errorf("warm-up write: %w", err))
		}
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "sockbench:", err)
	os.Exit(1)
}

func numCPU() int {
	b, _ := os.ReadFile("/proc/cpuinfo")
	return strings.Count(string(b), "processor\t:")
}

func parseSize(s string) (int64, error) {
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		m      int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"G", 1 << 30}, {"M", 1 << 20}, {"k", 1 << 10}} {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSuffix(s, u.suffix), u.m
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("-size %q: expected a number of bytes with an optional k, M or GiB", s)
	}
	return n * mult, nil
}

// sink is the server: it reads every connection to its end, io bytes at
// a time, and reports the bytes received. The clients write io bytes at a
// time too.
type sink struct {
	ln   *net.UnixListener
	done chan int64
	io   int
}

func startSink(path string, io int) (*sink, error) {
	os.Remove(path)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, err
	}
	s := &sink{ln: ln, done: make(chan int64, 64), io: io}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, s.io)
				var n int64
				for {
					k, err := c.Read(buf)
					n += int64(k)
					if err != nil {
						break
					}
				}
				s.done <- n
			}()
		}
	}()
	return s, nil
}

var payload = func() []byte {
	b := make([]byte, 1<<20)
	rand.Read(b)
	return b
}()

// transfer sends size bytes over conns connections to path and returns
// MB/s (10^6 bytes), timed until the sink has read everything.
func transfer(path string, s *sink, size int64, conns int) (float64, error) {
	per := size / int64(conns)
	start := time.Now()
	errs := make(chan error, conns)
	for range conns {
		go func() {
			c, err := net.Dial("unix", path)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			left := per
			for left > 0 {
				k := min(left, int64(s.io))
				if _, err := c.Write(payload[:k]); err != nil {
					errs <- err
					return
				}
				left -= k
			}
			errs <- c.(*net.UnixConn).CloseWrite()
		}()
	}
	var got int64
	for range conns {
		if err := <-errs; err != nil {
			return 0, err
		}
	}
	timeout := time.After(5 * time.Minute)
	for range conns {
		select {
		case n := <-s.done:
			got += n
		case <-timeout:
			return 0, errors.New("the sink did not receive everything within 5 minutes")
		}
	}
	elapsed := time.Since(start)
	if got != per*int64(conns) {
		return 0, fmt.Errorf("sink received %d bytes, want %d", got, per*int64(conns))
	}
	return float64(got) / elapsed.Seconds() / 1e6, nil
}

func waitSocket(path string, proc *exec.Cmd) error {
	for range 200 {
		if c, err := net.Dial("unix", path); err == nil {
			c.Close()
			return nil
		}
		if proc.ProcessState != nil {
			return fmt.Errorf("%s exited", proc.Path)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("%s did not appear", path)
}

// The probe connection of waitSocket reaches the sink too.
func drainProbe(s *sink) { <-s.done }

func viaOpsctl(bin, dir, srv string, s *sink, size int64, conns int, noSplice bool, out string) (float64, string, error) {
	proxy := filepath.Join(dir, "opsctl.sock")
	if out == "" {
		out = filepath.Join(captures, "opsctl.pcap")
		defer os.Remove(out)
	}
	cmd := exec.Command(bin, "sock", "capture", "--socket", srv, "--listen", proxy, "-w", out, "--log-level", "warn")
	cmd.Stderr = os.Stderr
	cmd.Env = os.Environ()
	if noSplice {
		cmd.Env = append(cmd.Env, "OPSCTL_SOCK_NOSPLICE=1")
	}
	if err := cmd.Start(); err != nil {
		return 0, "", err
	}
	if err := waitSocket(proxy, cmd); err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		return 0, "", err
	}
	drainProbe(s)
	cpu0 := selfCPU()
	mbs, err := transfer(proxy, s, size, conns)
	benchCPU := selfCPU() - cpu0
	stopAt := time.Now()
	cmd.Process.Signal(os.Interrupt)
	waitErr := cmd.Wait()
	if err != nil {
		return 0, "", err
	}
	if waitErr != nil {
		return 0, "", fmt.Errorf("opsctl: %w", waitErr)
	}
	st, err := os.Stat(out)
	if err != nil {
		return 0, "", err
	}
	cpu := cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	return mbs, fmt.Sprintf("pcap %d MB, complete %v after SIGINT; opsctl used %.2f CPU-s, client and server %.2f", st.Size()/1e6, time.Since(stopAt).Round(time.Millisecond), cpu.Seconds(), benchCPU.Seconds()), nil
}

func viaSocat(dir, srv string, s *sink, size int64, conns int) (float64, string, error) {
	port, err := freePort()
	if err != nil {
		return 0, "", err
	}
	out := filepath.Join(captures, "socat.pcap")
	defer os.Remove(out)
	tcpdump := exec.Command("tcpdump", "-i", "lo", "-nn", "-s", "0", "-B", "65536", "-w", out, "tcp", "port", strconv.Itoa(port))
	stderr, _ := tcpdump.StderrPipe()
	if err := tcpdump.Start(); err != nil {
		return 0, "", err
	}
	defer tcpdump.Process.Kill()
	lines := bufio.NewScanner(stderr)
	ready := make(chan struct{})
	var summary []string
	var mu sync.Mutex
	go func() {
		for lines.Scan() {
			l := lines.Text()
			if strings.Contains(l, "listening on") {
				close(ready)
			}
			mu.Lock()
			summary = append(summary, l)
			mu.Unlock()
		}
	}()
	select {
	case <-ready:
	case <-time.After(10 * time.Second):
		return 0, "", errors.New("tcpdump did not start")
	}
	tcpSide := exec.Command("socat", fmt.Sprintf("TCP-LISTEN:%d,fork,reuseaddr,bind=127.0.0.1", port), "UNIX-CONNECT:"+srv)
	proxy := filepath.Join(dir, "socat.sock")
	unixSide := exec.Command("socat", "UNIX-LISTEN:"+proxy+",fork", fmt.Sprintf("TCP:127.0.0.1:%d", port))
	for _, c := range []*exec.Cmd{tcpSide, unixSide} {
		c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := c.Start(); err != nil {
			return 0, "", err
		}
		defer func() {
			syscall.Kill(-c.Process.Pid, syscall.SIGTERM)
			c.Wait()
		}()
		time.Sleep(100 * time.Millisecond)
	}
	if err := waitSocket(proxy, unixSide); err != nil {
		return 0, "", err
	}
	drainProbe(s)
	cpu0 := selfCPU()
	mbs, err := transfer(proxy, s, size, conns)
	benchCPU := selfCPU() - cpu0
	if err != nil {
		return 0, "", err
	}
	tcpdump.Process.Signal(os.Interrupt)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := make(chan struct{})
	go func() { tcpdump.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
	mu.Lock()
	defer mu.Unlock()
	note := ""
	for _, l := range summary {
		if strings.Contains(l, "dropped by kernel") || strings.Contains(l, "captured") {
			note += strings.TrimSpace(l) + "; "
		}
	}
	return mbs, note + fmt.Sprintf("client and server used %.2f CPU-s", benchCPU.Seconds()), nil
}

// fileWrite writes size bytes to a new file in the captures folder with
// 1 MiB write(2) calls: what the machine allows any capture writer.
func fileWrite(size int64) (float64, error) {
	path := filepath.Join(captures, "write-test")
	f, err := os.Create(path)
	if err != nil {
		return 0, err
	}
	defer os.Remove(path)
	defer f.Close()
	block := payload
	start := time.Now()
	for left := size; left > 0; left -= int64(len(block)) {
		if _, err := f.Write(block[:min(left, int64(len(block)))]); err != nil {
			return 0, err
		}
	}
	return float64(size) / time.Since(start).Seconds() / 1e6, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
