package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/opsctl/opsctl/internal/testenv"
)

// The symlink racer is the hostile local user of the socket tests: a
// process running as nobody that owns the folder opsctl (as root) creates a
// socket in. Whenever a socket file shows up there under a name it was not
// told to leave alone, it renames a symbolic link to a root-owned victim
// file over it: a chmod or chown that opsctl then makes through that name
// lands on the victim. With hijackDirs it also moves away every folder that
// appears and makes one of its own (mode 0777) in its place, for code that
// would reach a private folder by its name again.
//
// It is the test binary itself, run again with racerEnv set; init runs it
// before any test.
const racerEnv = "OPSCTL_TEST_SYMLINK_RACER"

func init() {
	if spec := os.Getenv(racerEnv); spec != "" {
		os.Exit(runSymlinkRacer(spec))
	}
}

// racerSpec is what the racer is told, passed as one environment value.
type racerSpec struct {
	dir        string   // the folder it owns
	victim     string   // what its links point at
	leave      []string // names it must not touch (the server's own socket)
	hijackDirs bool
}

func (s racerSpec) encode() string {
	return strings.Join([]string{s.dir, s.victim, fmt.Sprint(s.hijackDirs), strings.Join(s.leave, "/")}, "\n")
}

func decodeRacerSpec(v string) racerSpec {
	f := strings.SplitN(v, "\n", 4)
	s := racerSpec{dir: f[0], victim: f[1], hijackDirs: f[2] == "true"}
	if f[3] != "" {
		s.leave = strings.Split(f[3], "/")
	}
	return s
}

// runSymlinkRacer loops until killed. It prints one line per socket it
// replaced ("pounced NAME mode=0660 uid=1 gid=2": the socket file as it
// found it) and per folder it took over ("hijacked NAME").
func runSymlinkRacer(v string) int {
	spec := decodeRacerSpec(v)
	out := bufio.NewWriter(os.Stdout)
	leave := map[string]bool{}
	for _, n := range spec.leave {
		leave[n] = true
	}
	link := filepath.Join(spec.dir, ".racer-link")
	os.Remove(link)
	if err := os.Symlink(spec.victim, link); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	mine := map[string]bool{} // folders it made itself
	for stolen := 0; ; {
		d, err := os.Open(spec.dir)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		names, _ := d.Readdirnames(-1)
		d.Close()
		for _, name := range names {
			if leave[name] || mine[name] || strings.HasPrefix(name, ".racer") {
				continue
			}
			path := filepath.Join(spec.dir, name)
			var st syscall.Stat_t
			if syscall.Lstat(path, &st) != nil {
				continue
			}
			switch st.Mode & syscall.S_IFMT {
			case syscall.S_IFSOCK:
				// The link is made ahead: between seeing the socket and
				// replacing it there is only the rename.
				if os.Rename(link, path) == nil {
					fmt.Fprintf(out, "pounced %s mode=%04o uid=%d gid=%d\n", name, st.Mode&0o7777, st.Uid, st.Gid)
					out.Flush()
					os.Symlink(spec.victim, link)
				}
			case syscall.S_IFDIR:
				if !spec.hijackDirs {
					continue
				}
				stolen++
				if os.Rename(path, filepath.Join(spec.dir, fmt.Sprintf(".racer-stolen-%d", stolen))) != nil {
					continue
				}
				if os.Mkdir(path, 0o777) == nil {
					os.Chmod(path, 0o777)
					mine[name] = true
					fmt.Fprintf(out, "hijacked %s\n", name)
					out.Flush()
				}
			}
		}
	}
}

// symlinkRacer is a running racer.
type symlinkRacer struct {
	cmd  *exec.Cmd
	mu   sync.Mutex
	seen []string // its output lines
	done chan struct{}
}

// startSymlinkRacer runs the racer as nobody (uid and gid 65534) over
// spec.dir until the test ends. spec.dir must be nobody's, and every
// folder above it searchable by nobody.
func startSymlinkRacer(t *testing.T, spec racerSpec) *symlinkRacer {
	t.Helper()
	testenv.NeedRoot(t)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// The test binary sits in a folder only root may enter: nobody runs
	// a copy in a folder of its own.
	binDir := t.TempDir()
	for _, d := range []string{filepath.Dir(binDir), binDir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	bin := filepath.Join(binDir, "racer")
	if err := copyExecutable(self, bin); err != nil {
		t.Fatal(err)
	}
	r := &symlinkRacer{done: make(chan struct{})}
	r.cmd = exec.Command(bin)
	r.cmd.Env = append(os.Environ(), racerEnv+"="+spec.encode())
	r.cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534, Groups: []uint32{}}}
	stdout, err := r.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	r.cmd.Stderr = &stderr
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			r.mu.Lock()
			r.seen = append(r.seen, sc.Text())
			r.mu.Unlock()
		}
		r.cmd.Wait()
		close(r.done)
	}()
	t.Cleanup(func() {
		r.cmd.Process.Kill()
		<-r.done
		if s := stderr.String(); s != "" {
			t.Logf("racer stderr: %s", s)
		}
	})
	return r
}

// lines returns what the racer reported so far.
func (r *symlinkRacer) lines() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.seen...)
}

func copyExecutable(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// raceFolders makes the layout of an attack: a root folder (searchable by
// everyone) holding the victim, a root-owned 0600 file, and a folder owned
// by nobody where the racer works.
func raceFolders(t *testing.T) (owned, victim string) {
	t.Helper()
	base := t.TempDir()
	for _, d := range []string{filepath.Dir(base), base} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	victim = filepath.Join(base, "victim")
	if err := os.WriteFile(victim, []byte("root's secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	owned = filepath.Join(base, "owned")
	if err := os.Mkdir(owned, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(owned, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	return owned, victim
}

// victimUntouched fails the test when the victim's mode or owner changed.
func victimUntouched(t *testing.T, victim string, try int) bool {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Lstat(victim, &st); err != nil {
		t.Fatalf("try %d: victim: %v", try, err)
	}
	if st.Mode&0o7777 != 0o600 || st.Uid != 0 || st.Gid != 0 {
		t.Errorf("try %d: the root-owned 0600 victim is now mode %04o, owner %d:%d: opsctl changed it through the racer's symbolic link",
			try, st.Mode&0o7777, st.Uid, st.Gid)
		return false
	}
	return true
}

// raceTries is how many times each attack is tried. Against the code that
// chmodded the socket by its path, the victim changed within 3 to 29 tries.
const raceTries = 40

// runUntilReady runs opsctl with args until its stderr shows ready (or it
// exits), calls serving while it runs, then stops it with SIGINT or
// SIGTERM and returns whether it served, its exit code and its stderr.
func runUntilReady(t *testing.T, ready string, stop os.Signal, serving func(), args ...string) (bool, int, string) {
	t.Helper()
	cmd := exec.Command(testenv.Opsctl(t), args...)
	stderr := &testenv.SyncBuffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	started := false
	deadline := time.After(20 * time.Second)
wait:
	for {
		if strings.Contains(stderr.String(), ready) {
			started = true
			break
		}
		select {
		case <-done:
			break wait
		case <-deadline:
			cmd.Process.Kill()
			<-done
			t.Fatalf("opsctl %s neither served nor exited: %s", strings.Join(args, " "), stderr)
		case <-time.After(5 * time.Millisecond):
		}
	}
	if started {
		serving()
		cmd.Process.Signal(stop)
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			<-done
			t.Fatalf("opsctl did not stop on %v: %s", stop, stderr)
		}
	}
	return started, cmd.ProcessState.ExitCode(), stderr.String()
}

// undoRacer removes the links the racer left in its folder in place of
// sockets (its folder, its right), so that each try starts afresh.
func undoRacer(owned string) {
	entries, _ := os.ReadDir(owned)
	for _, e := range entries {
		if e.Type()&os.ModeSymlink != 0 && !strings.HasPrefix(e.Name(), ".racer") {
			os.Remove(filepath.Join(owned, e.Name()))
		}
	}
}

// wantSocketFile checks the mode and owner of the socket file at path, when
// it is still a socket (the racer may have replaced it since).
func wantSocketFile(t *testing.T, path string, mode uint32, uid, gid uint32, try int) {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Lstat(path, &st); err != nil || st.Mode&syscall.S_IFMT != syscall.S_IFSOCK {
		return
	}
	if st.Mode&0o7777 != mode || st.Uid != uid || st.Gid != gid {
		t.Errorf("try %d: socket %s has mode %04o, owner %d:%d; want %04o, %d:%d", try, path, st.Mode&0o7777, st.Uid, st.Gid, mode, uid, gid)
	}
}

// wantPounces checks what the racer found: every socket it saw at a name
// in its folder must already have had its final mode and owner.
func wantPounces(t *testing.T, r *symlinkRacer, mode uint32, uid, gid int) {
	t.Helper()
	want := fmt.Sprintf("mode=%04o uid=%d gid=%d", mode, uid, gid)
	for _, l := range r.lines() {
		if strings.HasPrefix(l, "pounced ") && !strings.HasSuffix(l, want) {
			t.Errorf("racer %s; a socket may only appear with %s", l, want)
		}
	}
}
