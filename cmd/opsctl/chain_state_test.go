package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/opsctl/opsctl/internal/testenv"
	"github.com/opsctl/opsctl/pkg/chain"
)

// soundState writes a state file with a run in it, as `chain trigger
// --follow` leaves it.
func soundState(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "chain.db")
	planner, err := chain.ScanPlanner(context.Background(), chain.Scanner{Source: &chain.DirSource{Root: examplesDir()}, Registries: chain.AnyRegistry(), Concurrency: 1})
	if err != nil {
		t.Fatal(err)
	}
	e, err := chain.NewEngine(chain.EngineOptions{StatePath: path, Planner: planner})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if _, err := e.StartRun([]string{"ops/base"}, "", "test", ""); err != nil {
		t.Fatal(err)
	}
	return path
}

// overwriteFreelist overwrites the freelist page of a bbolt file, found
// through its newest meta page (page header 16 bytes; the freelist page id
// at meta offset 32, the txid at 48; little-endian here): bbolt panicked
// with "invalid freelist page" on such a file.
func overwriteFreelist(t *testing.T, path string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	pageSize := int(binary.LittleEndian.Uint32(data[24:]))
	var freelist, txid uint64
	for _, off := range []int{16, pageSize + 16} {
		if t := binary.LittleEndian.Uint64(data[off+48:]); t >= txid {
			freelist, txid = binary.LittleEndian.Uint64(data[off+32:]), t
		}
	}
	off := int(freelist) * pageSize
	copy(data[off:off+pageSize], bytes.Repeat([]byte{0xAA}, pageSize))
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// Issue 19, item 9: every command that opens the state file answers a
// corrupt one with one line naming the file and what to do, exit 1, and
// leaves the file as it was; serve, watch and trigger --follow before they
// ask GitLab anything.
func TestChainCorruptStateIsOneLineForEveryCommand(t *testing.T) {
	fake := fakeImages(t)
	source := []string{"--gitlab-url", fake.URL(), "--group", "img"}
	env := []string{"GITLAB_TOKEN=" + e2eToken}
	for _, corruption := range []struct {
		name string
		do   func(t *testing.T, path string)
	}{
		{"freelist page overwritten", overwriteFreelist},
		{"not a bbolt file", func(t *testing.T, path string) {
			os.WriteFile(path, bytes.Repeat([]byte("not a database\n"), 1000), 0o600)
		}},
		{"truncated", func(t *testing.T, path string) { os.Truncate(path, 5000) }},
	} {
		state := soundState(t)
		corruption.do(t, state)
		before, _ := os.ReadFile(state)
		for _, args := range [][]string{
			{"chain", "status", "--state", state},
			append([]string{"chain", "serve", "--listen", freeAddr(t), "--state", state, "--insecure-no-webhook-secret"}, source...),
			append([]string{"chain", "watch", "--once", "--state", state}, source...),
			append([]string{"chain", "watch", "--once", "--dry-run", "--state", state}, source...),
			append([]string{"chain", "trigger", "img/base", "--follow", "--state", state}, source...),
			append([]string{"chain", "trigger", "img/base", "--follow", "--dry-run", "--state", state}, source...),
		} {
			fake.ResetCalls()
			out, stderr, code := opsctlEnv(t, env, args...)
			line := strings.TrimSpace(stderr)
			if code != 1 || out != "" || strings.Contains(line, "\n") || !strings.Contains(line, "state file "+state+" is corrupt (") ||
				!strings.Contains(line, "move it aside (mv "+state+" "+state+".corrupt)") || strings.Contains(line, "panic") {
				t.Errorf("%s: %v: exit %d, stdout %q, stderr:\n%s\nwant exit 1 and one line naming the file and the mv", corruption.name, args[:2], code, out, stderr)
			}
			if calls := fake.Calls(); len(calls) != 0 {
				t.Errorf("%s: %v asked GitLab %d times with a corrupt state file (first %s %s)", corruption.name, args[:2], len(calls), calls[0].Method, calls[0].Path)
			}
			if after, _ := os.ReadFile(state); !bytes.Equal(after, before) {
				t.Fatalf("%s: %v changed the corrupt state file", corruption.name, args[:2])
			}
		}
	}
}

// Issue 19, item 10: a state file is never created in a folder that does
// not exist (the receiver made whole trees of them), and must be a regular
// file: a usage error naming --state, exit 2, nothing created.
func TestChainStateFolderMustExist(t *testing.T) {
	fake := fakeImages(t)
	source := []string{"--gitlab-url", fake.URL(), "--group", "img"}
	env := []string{"GITLAB_TOKEN=" + e2eToken}
	dir := t.TempDir()
	missing := filepath.Join(dir, "nonexistent", "dir", "chain.db")
	link := filepath.Join(dir, "link.db")
	os.Symlink(filepath.Join(dir, "target.db"), link)
	fifo := filepath.Join(dir, "fifo.db")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		state, want string
	}{
		{missing, "--state " + missing + ": folder " + filepath.Dir(missing) + " does not exist; create it first"},
		{link, "--state " + link + ": a symbolic link; expected a regular file (opsctl does not write through links)"},
		{fifo, "--state " + fifo + ": a FIFO; expected a regular file"},
		{dir, "--state " + dir + ": a folder; expected a regular file"},
	} {
		for _, args := range [][]string{
			append([]string{"chain", "serve", "--listen", freeAddr(t), "--state", tc.state, "--insecure-no-webhook-secret"}, source...),
			append([]string{"chain", "watch", "--once", "--state", tc.state}, source...),
			append([]string{"chain", "trigger", "img/base", "--follow", "--state", tc.state}, source...),
			append([]string{"chain", "trigger", "img/base", "--follow", "--dry-run", "--state", tc.state}, source...),
		} {
			_, stderr, code := opsctlEnv(t, env, args...)
			if code != 2 || strings.TrimSpace(stderr) != "opsctl: "+tc.want {
				t.Errorf("%v --state %s: exit %d, stderr %q; want 2 and %q", args[:2], filepath.Base(tc.state), code, stderr, tc.want)
			}
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "nonexistent")); !os.IsNotExist(err) {
		t.Errorf("a folder was created for the state file (%v)", err)
	}
	if _, err := os.Lstat(filepath.Join(dir, "target.db")); !os.IsNotExist(err) {
		t.Errorf("a state file was created through the link (%v)", err)
	}
	for _, tc := range []struct{ state, want string }{
		{missing, "--state " + missing + ": no such file"},
		{dir, "--state " + dir + ": a folder; expected a regular file"},
		{fifo, "--state " + fifo + ": a FIFO; expected a regular file"},
	} {
		_, stderr, code := opsctlEnv(t, nil, "chain", "status", "--state", tc.state)
		if code != 2 || strings.TrimSpace(stderr) != "opsctl: "+tc.want {
			t.Errorf("status --state %s: exit %d, stderr %q; want 2 and %q", filepath.Base(tc.state), code, stderr, tc.want)
		}
	}
}

// The packaged state folder, /var/lib/opsctl, is the one opsctl creates
// when it is missing (systemd creates it for the unit; from a shell or a
// timer nobody else does), mode 0700. Run in a mount namespace with a
// tmpfs on /var/lib, so that the host's folder is not touched.
func TestChainCreatesOnlyThePackagedStateFolder(t *testing.T) {
	testenv.NeedRoot(t)
	unshare := testenv.Need(t, "unshare", "util-linux")
	fake := fakeImages(t)
	fake.AddToken("read-only-token", "read_api") // creating the pipeline fails: the run ends at once
	script := `mount -t tmpfs tmpfs /var/lib && "$@"; echo "exit $?"; stat -c '%a %F' /var/lib/opsctl /var/lib/opsctl/chain-follow.db`
	cmd := exec.Command(unshare, "--mount", "--propagation", "private", "sh", "-c", script, "sh",
		testenv.Opsctl(t), "chain", "trigger", "img/base", "--follow", "--gitlab-url", fake.URL(), "--group", "img")
	cmd.Env = append(os.Environ(), "GITLAB_TOKEN=read-only-token")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if !strings.Contains(string(out), "\n700 directory\n600 regular file\n") {
		t.Errorf("want /var/lib/opsctl created 0700 with the state file in it; got\n%s", out)
	}
}
