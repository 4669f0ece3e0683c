package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/opsctl/opsctl/internal/cli"
	"github.com/opsctl/opsctl/internal/testenv"
	"github.com/opsctl/opsctl/pkg/sockspy"
)

// wiresharkHome is a HOME of its own for tshark, with opsctl linked into
// its personal extcap folder by `sock extcap install --dir`: Wireshark
// 4.0 runs the programs of $HOME/.config/wireshark/extcap, so the
// system's extcap folder is never touched.
func wiresharkHome(t *testing.T) string {
	t.Helper()
	testenv.Need(t, "tshark", "tshark")
	home := t.TempDir()
	extcap := filepath.Join(home, ".config", "wireshark", "extcap")
	if err := os.MkdirAll(extcap, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, stderr, code := testenv.Run(t, "", "sock", "extcap", "install", "--dir", extcap); code != 0 {
		t.Fatalf("sock extcap install --dir %s: exit %d: %s", extcap, code, stderr)
	}
	return home
}

// tsharkIn runs tshark with home as its HOME and returns the command,
// not started; its stdout and stderr go to the buffers returned.
func tsharkIn(t *testing.T, home string, args ...string) (*exec.Cmd, *testenv.SyncBuffer) {
	t.Helper()
	cmd := exec.Command(testenv.Need(t, "tshark", "tshark"), args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "HOME=") && !strings.HasPrefix(kv, "XDG_CONFIG_HOME=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "HOME="+home)
	out := &testenv.SyncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	return cmd, out
}

// runTshark runs tshark in home to its end (90 s at most) and returns its
// output and exit code.
func runTshark(t *testing.T, home string, args ...string) (string, int) {
	t.Helper()
	cmd, out := tsharkIn(t, home, args...)
	code := waitTshark(t, cmd, startProcess(t, cmd), out)
	return out.String(), code
}

// waitTshark waits for tshark, started by startProcess (done), to end (90 s
// at most) and returns its exit code.
func waitTshark(t *testing.T, cmd *exec.Cmd, done <-chan struct{}, out fmt.Stringer) int {
	t.Helper()
	select {
	case <-done:
	case <-time.After(90 * time.Second):
		t.Fatalf("tshark %s did not end: %s", strings.Join(cmd.Args[1:], " "), out)
	}
	return cmd.ProcessState.ExitCode()
}

// systemExtcapFolder lists the system's extcap folder, which no test may
// change.
func systemExtcapFolder(t *testing.T) []string {
	t.Helper()
	out, err := exec.Command(testenv.Need(t, "tshark", "tshark"), "-G", "folders").Output()
	if err != nil {
		t.Fatalf("tshark -G folders: %v", err)
	}
	dir, ok := sockspy.ParseTsharkFolders(string(out))
	if !ok {
		t.Fatalf("tshark -G folders names no extcap folder:\n%s", out)
	}
	entries, _ := os.ReadDir(dir)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func TestSockExtcapTsharkListsTheInterface(t *testing.T) {
	home := wiresharkHome(t)
	out, code := runTshark(t, home, "-D")
	if code != 0 || !strings.Contains(out, ". "+sockspy.ExtcapInterface+" (UNIX socket (opsctl))\n") {
		t.Errorf("tshark -D: exit %d, no %s:\n%s", code, sockspy.ExtcapInterface, out)
	}
}

// TestSockExtcapConfigOffersAListeningSocket: Wireshark's capture dialog
// lists the socket a server listens on, whether opsctl is asked by its
// own name or through the link Wireshark runs.
func TestSockExtcapConfigOffersAListeningSocket(t *testing.T) {
	srv := filepath.Join(t.TempDir(), "app.sock")
	startHTTPServer(t, srv)
	want := "value {arg=0}{value=" + srv + "}{display=" + srv + " (stream)}{default=false}\n"
	out, stderr, code := testenv.Run(t, "", "--extcap-interface", sockspy.ExtcapInterface, "--extcap-config")
	if code != 0 || !strings.Contains(out, want) || stderr != "" {
		t.Errorf("opsctl --extcap-config: exit %d, stderr %q, no %q in:\n%s", code, stderr, want, out)
	}
	link := filepath.Join(t.TempDir(), sockspy.ExtcapLinkName)
	if err := os.Symlink(testenv.Opsctl(t), link); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(link, "--extcap-config", "--extcap-interface", sockspy.ExtcapInterface)
	byLink, err := cmd.Output()
	if err != nil || !strings.Contains(string(byLink), want) {
		t.Errorf("%s --extcap-config: %v, no %q in:\n%s", sockspy.ExtcapLinkName, err, want, byLink)
	}
}

// tsharkSwapping starts tshark in home capturing srv (the file before
// was) in swap mode until stop (tshark's -a), into file, and returns once
// the socket is swapped: what connects to srv then is captured.
func tsharkSwapping(t *testing.T, home, srv string, before os.FileInfo, stop, file string) (*exec.Cmd, fmt.Stringer, <-chan struct{}) {
	t.Helper()
	cmd, out := tsharkIn(t, home, "-i", sockspy.ExtcapInterface, "-o", "extcap."+sockspy.ExtcapInterface+".socket:"+srv,
		"-a", stop, "-w", file)
	done := startProcess(t, cmd)
	swapped(t, srv, before, done, out)
	return cmd, out, done
}

// swapped waits until opsctl has swapped srv for its proxy (run by
// tshark), failing when tshark ends first.
func swapped(t *testing.T, srv string, before os.FileInfo, done <-chan struct{}, out fmt.Stringer) {
	t.Helper()
	ok := testenv.WaitUntil(t, 60*time.Second, func() bool {
		exitedEarly(t, done, "before the swap", out)
		during, err := os.Stat(srv)
		return err == nil && !os.SameFile(before, during)
	})
	if !ok {
		t.Fatalf("the socket was not swapped in 60s: %s", out)
	}
}

// TestSockExtcapCaptureInTshark is the test with the real peer:
// tshark runs the capture of a socket in swap mode, curl talks to the
// ORIGINAL path meanwhile, every request is in the file, and after tshark
// stops (-a duration) the socket is the original again with nothing left
// beside it, nor in the system's extcap folder.
func TestSockExtcapCaptureInTshark(t *testing.T) {
	curl := testenv.Need(t, "curl", "curl")
	home := wiresharkHome(t)
	system := systemExtcapFolder(t)
	dir := t.TempDir()
	srv := filepath.Join(dir, "app.sock")
	startHTTPServer(t, srv)
	before, _ := os.Stat(srv)
	file := filepath.Join(t.TempDir(), "cap.pcapng")
	cmd, out, done := tsharkSwapping(t, home, srv, before, "duration:10", file)

	const requests = 6
	var wg sync.WaitGroup
	for i := range requests {
		wg.Add(1)
		go func() {
			defer wg.Done()
			uri := fmt.Sprintf("/extcap/%d", i)
			got, err := exec.Command(curl, "-sS", "--unix-socket", srv, "http://localhost"+uri).CombinedOutput()
			if want := "uri=" + uri + " body=0\n"; err != nil || string(got) != want {
				t.Errorf("curl %s: %v: %q, want %q", uri, err, got, want)
			}
		}()
	}
	wg.Wait()
	exitedEarly(t, done, "before -a duration:10 ended (the requests took too long)", out)
	if code := waitTshark(t, cmd, done, out); code != 0 {
		t.Fatalf("tshark exit %d:\n%s", code, out)
	}
	if strings.Contains(out.String(), "Error by extcap pipe") {
		t.Errorf("tshark reports an error of opsctl:\n%s", out)
	}
	wantSocketRestored(t, srv, before, out)
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("beside the socket: %v", entries)
	}
	uris := strings.Fields(tshark(t, "-r", file, "-Y", "http.request", "-T", "fields", "-e", "http.request.uri"))
	slices.Sort(uris)
	var want []string
	for i := range requests {
		want = append(want, fmt.Sprintf("/extcap/%d", i))
	}
	if !slices.Equal(uris, want) {
		t.Errorf("tshark -r dissected the requests %q, want %q", uris, want)
	}
	if comments := tshark(t, "-r", file, "-Y", `frame.comment contains "curl"`, "-T", "fields", "-e", "tcp.stream"); len(strings.Fields(comments)) != requests {
		t.Errorf("%d connections carry the client's command, want %d", len(strings.Fields(comments)), requests)
	}
	if after := systemExtcapFolder(t); !slices.Equal(system, after) {
		t.Errorf("the system's extcap folder changed: %q, then %q", system, after)
	}
}

// TestSockExtcapSIGTERMMidTransferLeavesAReadableFile: tshark ends the
// capture (-a duration) with SIGTERM while clients send; the socket is
// put back, and tshark reads the file it wrote (no packet cut short) with
// every connection in it.
func TestSockExtcapSIGTERMMidTransferLeavesAReadableFile(t *testing.T) {
	home := wiresharkHome(t)
	dir := t.TempDir()
	srv := filepath.Join(dir, "sink.sock")
	flowing := startSink(t, srv)
	before, _ := os.Stat(srv)
	file := filepath.Join(t.TempDir(), "cap.pcapng")
	cmd, out, done := tsharkSwapping(t, home, srv, before, "duration:6", file)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	const clients = 3
	for range clients {
		conn, err := net.Dial("unix", srv)
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() { // send until the proxy goes away, paced: a few MB for tshark -r
			defer wg.Done()
			defer conn.Close()
			chunk := bytes.Repeat([]byte("stream "), 1000)
			for ctx.Err() == nil {
				if _, err := conn.Write(chunk); err != nil {
					return
				}
				time.Sleep(10 * time.Millisecond)
			}
		}()
	}
	for range clients {
		select {
		case <-flowing:
		case <-done:
			t.Fatalf("tshark ended before every connection flowed: %s", out)
		}
	}
	if code := waitTshark(t, cmd, done, out); code != 0 {
		t.Fatalf("tshark exit %d:\n%s", code, out)
	}
	cancel()
	wg.Wait()
	wantSocketRestored(t, srv, before, out)
	conv := tshark(t, "-r", file, "-q", "-z", "conv,tcp")
	if strings.Count(conv, "<->") != clients {
		t.Errorf("want %d conversations in the file tshark wrote:\n%s", clients, conv)
	}
	// Every connection's data is there. (Their ends are not: Wireshark
	// stops reading the FIFO when it stops the capture, before opsctl
	// could record the resets that close them.)
	streams := tshark(t, "-r", file, "-Y", "tcp.len>0", "-T", "fields", "-e", "tcp.stream")
	if n := len(slices.Compact(slices.Sorted(slices.Values(strings.Fields(streams))))); n != clients {
		t.Errorf("%d connections carry data in the file, want %d", n, clients)
	}
}

// TestSockExtcapSIGTERMFinishesTheCaptureForItsReader: Wireshark's other
// way to stop an extcap, SIGTERM while it still reads the FIFO: opsctl
// puts the socket back, closes the open connections (a reset each) and
// writes every packet before it closes the FIFO, exit 0.
func TestSockExtcapSIGTERMFinishesTheCaptureForItsReader(t *testing.T) {
	testenv.Need(t, "tshark", "tshark")
	dir := t.TempDir()
	srv := filepath.Join(dir, "app.sock")
	startHTTPServer(t, srv)
	before, _ := os.Stat(srv)
	fifo := filepath.Join(t.TempDir(), "wireshark_extcap_"+sockspy.ExtcapInterface)
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(testenv.Opsctl(t), "--capture", "--extcap-interface", sockspy.ExtcapInterface, "--fifo", fifo, "--socket", srv)
	stderr := &testenv.SyncBuffer{}
	cmd.Stderr = stderr
	done := startProcess(t, cmd)
	// Wireshark's side: read the FIFO to its end, into a file.
	file := filepath.Join(t.TempDir(), "cap.pcapng")
	read := make(chan error, 1)
	go func() {
		r, err := os.Open(fifo)
		if err != nil {
			read <- err
			return
		}
		defer r.Close()
		b, err := io.ReadAll(r)
		if err == nil {
			err = os.WriteFile(file, b, 0o600)
		}
		read <- err
	}()
	swapped(t, srv, before, done, stderr)
	const clients = 3
	for i := range clients {
		conn, err := net.Dial("unix", srv)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		fmt.Fprintf(conn, "GET /open/%d HTTP/1.1\r\nHost: x\r\n\r\n", i)
		if reply, err := bufio.NewReader(conn).ReadString('\n'); err != nil || !strings.HasPrefix(reply, "HTTP/1.1 200") {
			t.Fatalf("reply %q, %v", reply, err)
		}
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatalf("opsctl did not stop on SIGTERM: %s", stderr)
	}
	if code := cmd.ProcessState.ExitCode(); code != 0 || stderr.String() != "" {
		t.Errorf("exit %d, stderr %q; want 0 and nothing for Wireshark to show", code, stderr)
	}
	if err := <-read; err != nil {
		t.Fatal(err)
	}
	wantSocketRestored(t, srv, before, stderr)
	uris := tshark(t, "-r", file, "-Y", "http.request", "-T", "fields", "-e", "http.request.uri")
	resets := tshark(t, "-r", file, "-Y", "tcp.flags.reset==1", "-T", "fields", "-e", "tcp.stream")
	if len(strings.Fields(uris)) != clients || len(strings.Fields(resets)) != clients {
		t.Errorf("requests %q and resets %q, want %d of each (open at SIGTERM)", uris, resets, clients)
	}
}

// TestSockExtcapListenModeEndsWhenTsharkStopsReading: with -c, tshark
// closes the FIFO once it has its packets; opsctl stops (its proxy socket
// removed) without an error for Wireshark to show. The clients talk
// through the proxy until then.
func TestSockExtcapListenModeEndsWhenTsharkStopsReading(t *testing.T) {
	curl := testenv.Need(t, "curl", "curl")
	home := wiresharkHome(t)
	dir := t.TempDir()
	srv := filepath.Join(dir, "app.sock")
	startHTTPServer(t, srv)
	proxy := filepath.Join(dir, "proxy.sock")
	p := "extcap." + sockspy.ExtcapInterface + "."
	cmd, out := tsharkIn(t, home, "-i", sockspy.ExtcapInterface, "-o", p+"socket:"+srv, "-o", p+"mode:listen", "-o", p+"proxy:"+proxy,
		"-c", "30", "-w", filepath.Join(t.TempDir(), "cap.pcapng"))
	done := startProcess(t, cmd)
	if !testenv.WaitUntil(t, 60*time.Second, func() bool {
		exitedEarly(t, done, "before serving", out)
		_, err := os.Stat(proxy)
		return err == nil
	}) {
		t.Fatalf("no proxy socket in 60s: %s", out)
	}
	if got, err := exec.Command(curl, "-sS", "--unix-socket", proxy, "http://localhost/first").CombinedOutput(); err != nil {
		t.Fatalf("curl through the proxy: %v %s", err, got)
	}
	// More requests until tshark has its 30 packets; the last ones may be
	// cut off by the end of the capture.
	for i := 0; ; i++ {
		select {
		case <-done:
		default:
			exec.Command(curl, "-sS", "--unix-socket", proxy, fmt.Sprintf("http://localhost/%d", i)).Run()
			continue
		}
		break
	}
	if code := waitTshark(t, cmd, done, out); code != 0 || strings.Contains(out.String(), "Error by extcap pipe") {
		t.Errorf("tshark exit %d:\n%s", code, out)
	}
	if !testenv.WaitUntil(t, 20*time.Second, func() bool { _, err := os.Lstat(proxy); return os.IsNotExist(err) }) {
		t.Errorf("the proxy socket is left after the capture")
	}
}

// TestSockExtcapErrorsReachWireshark: what stops a capture reaches
// Wireshark as extcap says (one line on stderr, a non-zero exit), which
// tshark shows: a socket that is gone, and a swap its user has no right to.
func TestSockExtcapErrorsReachWireshark(t *testing.T) {
	home := wiresharkHome(t)
	gone := filepath.Join(t.TempDir(), "gone.sock")
	out, code := runTshark(t, home, "-i", sockspy.ExtcapInterface, "-o", "extcap."+sockspy.ExtcapInterface+".socket:"+gone,
		"-a", "duration:5", "-w", filepath.Join(t.TempDir(), "cap.pcapng"))
	if want := "Error by extcap pipe: opsctl: --socket " + gone + ": no such file or directory\n"; code == 0 || !strings.Contains(out, want) {
		t.Errorf("tshark exit %d, want non-zero and %q:\n%s", code, want, out)
	}

	t.Run("no right to swap", func(t *testing.T) {
		testenv.NeedRoot(t)
		setpriv := testenv.Need(t, "setpriv", "util-linux")
		// nobody's Wireshark, opsctl linked in its personal folder.
		base, opsctl := opsctlForNobody(t)
		nobodyHome := filepath.Join(base, "home")
		extcap := filepath.Join(nobodyHome, ".config", "wireshark", "extcap")
		os.MkdirAll(extcap, 0o755)
		os.Symlink(opsctl, filepath.Join(extcap, sockspy.ExtcapLinkName))
		filepath.Walk(nobodyHome, func(p string, _ os.FileInfo, _ error) error { return os.Lchown(p, 65534, 65534) })
		run := filepath.Join(base, "run") // root's: nobody may not move the socket aside
		os.Mkdir(run, 0o755)
		srv := filepath.Join(run, "app.sock")
		startHTTPServer(t, srv)
		os.Chmod(srv, 0o666)
		before, _ := os.Stat(srv)
		cmd, out := tsharkIn(t, nobodyHome, "-i", sockspy.ExtcapInterface, "-o", "extcap."+sockspy.ExtcapInterface+".socket:"+srv,
			"-a", "duration:5", "-w", filepath.Join(nobodyHome, "cap.pcapng"))
		cmd.Args = append([]string{setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"}, cmd.Args...)
		cmd.Path = setpriv
		code := waitTshark(t, cmd, startProcess(t, cmd), out)
		want := "Error by extcap pipe: opsctl: --mode swap: cannot move " + srv + " aside: no write permission on folder " + run
		if code == 0 || !strings.Contains(out.String(), want) {
			t.Errorf("tshark as nobody: exit %d, want non-zero and %q:\n%s", code, want, out)
		}
		if after, err := os.Stat(srv); err != nil || !os.SameFile(before, after) {
			t.Errorf("the socket changed although the swap was refused: %v", err)
		}
	})
}

// TestSockExtcapCaptureRefusesAFIFOItDidNotGet: --fifo names a link to a
// root file, or a regular file: opsctl (root, for a root Wireshark) writes
// nothing and says so in one line, exit 2.
func TestSockExtcapCaptureRefusesAFIFOItDidNotGet(t *testing.T) {
	dir := t.TempDir()
	srv := filepath.Join(dir, "app.sock")
	startHTTPServer(t, srv)
	victim := filepath.Join(dir, "shadow")
	os.WriteFile(victim, []byte("root's secret\n"), 0o600)
	link := filepath.Join(dir, "wireshark_extcap_opsctl_sock")
	os.Symlink(victim, link)
	regular := filepath.Join(dir, "regular")
	os.WriteFile(regular, nil, 0o600)
	for path, want := range map[string]string{link: "is a symbolic link", regular: "is a regular file"} {
		_, stderr, code := testenv.Run(t, "", "--capture", "--extcap-interface", sockspy.ExtcapInterface, "--fifo", path, "--socket", srv)
		if code != cli.ExitUsage || !strings.Contains(stderr, "--fifo "+path+": "+want) || strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
			t.Errorf("--fifo %s: exit %d, stderr %q; want exit 2, one line with %q", path, code, stderr, want)
		}
	}
	if b, _ := os.ReadFile(victim); string(b) != "root's secret\n" {
		t.Errorf("the victim was written: %q", b)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 4 {
		t.Errorf("the folder changed: %v", entries)
	}
}

// TestSockExtcapInstallAndUninstall: the link made, left when it is there,
// removed; what is not opsctl's link is left (exit 1), a missing --dir is
// a usage error (exit 2), and the default folder is the one tshark names.
func TestSockExtcapInstallAndUninstall(t *testing.T) {
	dir := t.TempDir()
	link := filepath.Join(dir, sockspy.ExtcapLinkName)
	for range 2 {
		if _, stderr, code := testenv.Run(t, "", "sock", "extcap", "install", "--dir", dir); code != 0 {
			t.Fatalf("install: exit %d: %s", code, stderr)
		}
	}
	if target, err := filepath.EvalSymlinks(link); err != nil || !sameFile(target, testenv.Opsctl(t)) {
		t.Errorf("%s leads to %q, %v; want the opsctl that ran", link, target, err)
	}
	if _, stderr, code := testenv.Run(t, "", "sock", "extcap", "uninstall", "--dir", dir); code != 0 {
		t.Fatalf("uninstall: exit %d: %s", code, stderr)
	}
	if _, err := os.Lstat(link); !os.IsNotExist(err) {
		t.Errorf("the link is still there: %v", err)
	}

	os.WriteFile(link, []byte("#!/bin/sh\n"), 0o755)
	for _, verb := range []string{"install", "uninstall"} {
		_, stderr, code := testenv.Run(t, "", "sock", "extcap", verb, "--dir", dir)
		if code != cli.ExitFailure || !strings.Contains(stderr, link+" is a regular file, not opsctl's link: left as it is") {
			t.Errorf("%s over a file: exit %d: %s", verb, code, stderr)
		}
	}
	if b, _ := os.ReadFile(link); string(b) != "#!/bin/sh\n" {
		t.Errorf("the file was changed: %q", b)
	}
	missing := filepath.Join(dir, "missing")
	if _, stderr, code := testenv.Run(t, "", "sock", "extcap", "install", "--dir", missing); code != cli.ExitUsage ||
		!strings.Contains(stderr, "--dir "+missing+": folder "+missing+" does not exist") {
		t.Errorf("install --dir missing: exit %d: %s", code, stderr)
	}

	tshark, err := exec.LookPath("tshark")
	if err != nil {
		testenv.Missing(t, "tshark not found (Debian package tshark)")
	}
	folders, _ := exec.Command(tshark, "-G", "folders").Output()
	global, _ := sockspy.ParseTsharkFolders(string(folders))
	stdout, stderr, code := testenv.Run(t, "", "sock", "extcap", "install", "--dry-run")
	if want := "+ link " + filepath.Join(global, sockspy.ExtcapLinkName) + " to "; code != 0 || !strings.HasPrefix(stdout, want) {
		t.Errorf("install --dry-run: exit %d, %q, want %q...: %s", code, stdout, want, stderr)
	}
}

func sameFile(a, b string) bool {
	sa, errA := os.Stat(a)
	sb, errB := os.Stat(b)
	return errA == nil && errB == nil && os.SameFile(sa, sb)
}

// TestSockExtcapDispatchesWiresharksCalls: Wireshark runs the link by its
// name, or opsctl with an extcap argument first; anything else is opsctl's
// own command line.
func TestSockExtcapDispatchesWiresharksCalls(t *testing.T) {
	run := []string{"sock", "extcap", "run"}
	cases := []struct {
		argv []string
		want []string
	}{
		{[]string{"/usr/lib/x86_64-linux-gnu/wireshark/extcap/opsctl-sock", "--extcap-interfaces", "--extcap-version=4.0"},
			append(slices.Clone(run), "--extcap-interfaces", "--extcap-version=4.0")},
		{[]string{"opsctl-sock"}, run},
		{[]string{"opsctl", "--capture", "--extcap-interface", "opsctl_sock"}, append(slices.Clone(run), "--capture", "--extcap-interface", "opsctl_sock")},
		{[]string{"opsctl", "--extcap-config"}, append(slices.Clone(run), "--extcap-config")},
		{[]string{"opsctl", "sock", "capture", "--capture"}, []string{"sock", "capture", "--capture"}},
		{[]string{"/usr/bin/opsctl", "version"}, []string{"version"}},
		{[]string{"opsctl"}, []string{}},
	}
	for _, tc := range cases {
		if got := sockExtcapArgs(tc.argv); !slices.Equal(got, tc.want) {
			t.Errorf("%q: %q, want %q", tc.argv, got, tc.want)
		}
	}
}

func TestSockExtcapFlagsFillTheOptions(t *testing.T) {
	f := &cli.Factory{IO: &cli.IOStreams{Out: &bytes.Buffer{}, ErrOut: &bytes.Buffer{}}}
	var got *SockExtcapRunOptions
	cmd := NewCmdSockExtcapRun(f, func(o *SockExtcapRunOptions) error { got = o; return nil })
	cmd.SetArgs([]string{"--capture", "--extcap-interface", "opsctl_sock", "--fifo", "/tmp/f", "--socket", "/run/a.sock",
		"--socket-path", "@b", "--mode", "listen", "--proxy", "@p", "--port", "5432", "--extcap-capture-filter", "tcp",
		"--a-flag-of-a-later-wireshark", "x", "--extcap-version=4.0"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	if !got.Capture || got.Interface != "opsctl_sock" || got.FIFO != "/tmp/f" || got.Socket != "/run/a.sock" || got.SocketPath != "@b" ||
		got.Mode != "listen" || got.Proxy != "@p" || got.Port != 5432 || got.CaptureFilter != "tcp" || got.WiresharkVersion != "4.0" {
		t.Errorf("options %+v", got)
	}
	cmd = NewCmdSockExtcapRun(f, func(o *SockExtcapRunOptions) error { got = o; return nil })
	cmd.SetArgs([]string{"--extcap-interfaces"})
	if err := cmd.Execute(); err != nil || got.Mode != "swap" || got.Port != 80 {
		t.Errorf("defaults: mode %q port %d, %v", got.Mode, got.Port, err)
	}
	var install *SockExtcapInstallOptions
	icmd := NewCmdSockExtcapInstall(f, func(o *SockExtcapInstallOptions) error { install = o; return nil })
	icmd.SetArgs([]string{"--dir", "/x", "--dry-run"})
	if err := icmd.Execute(); err != nil || install.Link.Dir != "/x" || !install.Link.DryRun {
		t.Errorf("install options %+v, %v", install, err)
	}
	var uninstall *SockExtcapUninstallOptions
	ucmd := NewCmdSockExtcapUninstall(f, func(o *SockExtcapUninstallOptions) error { uninstall = o; return nil })
	ucmd.SetArgs([]string{"--dir", "/y"})
	if err := ucmd.Execute(); err != nil || uninstall.Link.Dir != "/y" || uninstall.Link.DryRun {
		t.Errorf("uninstall options %+v, %v", uninstall, err)
	}
}
