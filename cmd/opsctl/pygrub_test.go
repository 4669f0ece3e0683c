package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/opsctl/opsctl/internal/cli"
	"github.com/opsctl/opsctl/internal/testenv"
	"github.com/opsctl/opsctl/pkg/pygrubfix"
)

const (
	pygrub417    = "/usr/lib/xen-4.17/bin/pygrub"
	pygrubLib417 = "/usr/lib/xen-4.17/lib/python"
	pygrubCorpus = "../../pkg/pygrubfix/testdata/corpus"
)

func pygrubReadCorpus(t *testing.T, name string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(pygrubCorpus, name))
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func pygrubWriteTree(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for p, content := range files {
		host := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(host), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(host, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// pygrubCorpusFile is the absolute path of the corpus's config name.
func pygrubCorpusFile(t *testing.T, name string) string {
	t.Helper()
	path, err := filepath.Abs(filepath.Join(pygrubCorpus, name))
	if err != nil {
		t.Fatal(err)
	}
	return path
}

// pygrubGrub2Guest is a new guest root folder (named guest) whose
// /boot/grub2/grub.cfg is the corpus's config name.
func pygrubGrub2Guest(t *testing.T, name string) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), "guest")
	pygrubWriteTree(t, root, map[string]string{"/boot/grub2/grub.cfg": pygrubReadCorpus(t, name)})
	return root
}

// pygrubTestFactory is a Factory whose output goes to buffers.
func pygrubTestFactory() *cli.Factory {
	return &cli.Factory{IO: &cli.IOStreams{Out: &bytes.Buffer{}, ErrOut: &bytes.Buffer{}}}
}

// pygrubParseFlags parses args with the verb newCmd builds and returns the
// options its runF received (nil when parsing failed).
func pygrubParseFlags[O any](t *testing.T, newCmd func(*cli.Factory, func(*O) error) *cobra.Command, args ...string) (*O, error) {
	t.Helper()
	var got *O
	cmd := newCmd(pygrubTestFactory(), func(o *O) error { got = o; return nil })
	cmd.SetArgs(append([]string{}, args...)) // never nil: cobra would read os.Args
	err := cmd.Execute()
	return got, err
}

func TestPygrubCheckFlags(t *testing.T) {
	got, err := pygrubParseFlags(t, NewCmdPygrubCheck, "/mnt", "--xen", "4.1", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	if got.Path != "/mnt" || got.Xen != "4.1" || !got.Output.JSON() {
		t.Errorf("options %+v", got)
	}
	if got, err = pygrubParseFlags(t, NewCmdPygrubCheck, "/mnt"); err != nil || got.Xen != "4.17" {
		t.Errorf("default --xen: %+v %v", got, err)
	}
}

// TestPygrubCheckJSONAndExitCodes runs the built binary: the JSON
// keys docs/pygrub.md documents, exit 0 when bootable, 1 when not, 2 for bad usage.
func TestPygrubCheckJSONAndExitCodes(t *testing.T) {
	el7 := pygrubCorpusFile(t, "centos7.cfg")
	out, stderr, code := testenv.Run(t, "", "pygrub", "check", el7, "-o", "json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal([]byte(out), &raw); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	var keys []string
	for k := range raw {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if strings.Join(keys, ",") != "bootable,config,default,entries,parser,problems,xen" {
		t.Errorf("JSON keys %v", keys)
	}
	var rep struct {
		Xen      string
		Config   string
		Parser   string
		Default  int
		Entries  []map[string]string
		Problems []map[string]string
		Bootable bool
	}
	json.Unmarshal([]byte(out), &rep)
	if rep.Xen != "4.17" || rep.Parser != "grub2" || rep.Default != 0 || !rep.Bootable || len(rep.Entries) != 2 || rep.Entries[0]["title"] != "CentOS Linux (3.10.0-1160.el7.x86_64) 7 (Core)" || len(rep.Entries[0]) != 4 {
		t.Errorf("report %+v", rep)
	}

	out, _, code = testenv.Run(t, "", "pygrub", "check", el7, "--xen", "4.1", "-o", "json")
	json.Unmarshal([]byte(out), &rep)
	if code != 1 || rep.Bootable || rep.Xen != "4.1" || len(rep.Problems) == 0 {
		t.Errorf("4.1: exit %d, %+v", code, rep)
	}
	for _, p := range rep.Problems {
		if p["code"] == "" || !strings.Contains(p["message"], "fix: ") && p["code"] != "default-by-title" && p["code"] != "no-kernel" {
			t.Errorf("problem without a fix: %v", p)
		}
	}

	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"pygrub", "check", el7, "--xen", "3.4"}, 2, `--xen "3.4": expected 4.17 or 4.1`},
		{[]string{"pygrub", "check"}, 2, "accepts 1 arg"},
		{[]string{"pygrub", "check", "/no/such/guest"}, 2, "/no/such/guest: no such file or directory"},
		{[]string{"pygrub", "check", "/dev/null"}, 2, "/dev/null: a character device, expected a grub config file or a guest root folder"},
		{[]string{"pygrub", "check", el7, "-o", "yaml"}, 2, "expected one of text, json"},
	} {
		_, stderr, code := testenv.Run(t, "", tc.args...)
		if code != tc.code || !strings.Contains(stderr, tc.want) || strings.Count(strings.TrimSpace(stderr), "\n") > 0 {
			t.Errorf("%v: exit %d stderr %q; want %d, %q", tc.args, code, stderr, tc.code, tc.want)
		}
	}

	// A guest root folder, text output.
	root := pygrubGrub2Guest(t, "centos7.cfg")
	out, _, code = testenv.Run(t, "", "pygrub", "check", "--xen", "4.1", root)
	if code != 1 || !strings.Contains(out, "problem grub2-not-searched:") || !strings.Contains(out, "bootable: no") {
		t.Errorf("4.1 on EL7 root: exit %d\n%s", code, out)
	}
}

// pygrubCopyTree copies the installed pygrub 4.17 into a temporary tree and
// turns its GrubConf.py back into the greedy, linux16-less form of 4.1.
func pygrubCopyTree(t *testing.T) (script, grubConf, original string) {
	t.Helper()
	testenv.Need(t, pygrub417, "xen-utils-4.17")
	root := filepath.Join(t.TempDir(), "xen")
	os.MkdirAll(filepath.Join(root, "bin"), 0o755)
	os.MkdirAll(filepath.Join(root, "lib/python/grub"), 0o755)
	data, _ := os.ReadFile(pygrub417)
	os.WriteFile(filepath.Join(root, "bin/pygrub"), data, 0o755)
	mods, _ := filepath.Glob(filepath.Join(pygrubLib417, "grub/*.py"))
	for _, m := range mods {
		data, _ := os.ReadFile(m)
		os.WriteFile(filepath.Join(root, "lib/python/grub", filepath.Base(m)), data, 0o644)
	}
	exts, _ := filepath.Glob(filepath.Join(pygrubLib417, "xenfsimage*.so"))
	for _, e := range exts {
		os.Symlink(e, filepath.Join(root, "lib/python", filepath.Base(e)))
	}
	grubConf = filepath.Join(root, "lib/python/grub/GrubConf.py")
	src, _ := os.ReadFile(grubConf)
	original = string(src)
	old := strings.Replace(original, `["\'](.*?)["\'] (.*){`, `["\'](.*)["\'] (.*){`, 1)
	old = strings.Replace(old, "                'linux16': 'kernel',\n", "", 1)
	old = strings.Replace(old, "                'initrd16': 'initrd',\n", "", 1)
	if old == original {
		t.Fatal("could not revert GrubConf.py")
	}
	os.WriteFile(grubConf, []byte(old), 0o644)
	return filepath.Join(root, "bin/pygrub"), grubConf, original
}

func pygrubIsconfig(t *testing.T, pygrub, cfg string) (string, error) {
	cmd := exec.Command(pygrub, "--isconfig", "-q", "-n", "--output-directory", t.TempDir(), cfg)
	out, err := cmd.Output()
	return string(out), err
}

// TestPygrubPatchOnGreedyCopy drives the patch command end to end on a
// reverted copy of the real pygrub, then boots the EL7 config with it.
func TestPygrubPatchOnGreedyCopy(t *testing.T) {
	script, grubConf, original := pygrubCopyTree(t)
	el7 := pygrubCorpusFile(t, "centos7.cfg")
	want, err := pygrubIsconfig(t, pygrub417, el7)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := pygrubIsconfig(t, script, el7); err == nil {
		t.Fatalf("the greedy copy boots EL7:\n%s", got)
	}
	before, _ := os.ReadFile(grubConf)

	_, stderr, code := testenv.Run(t, "", "pygrub", "patch", "--pygrub", script, "--check")
	if code != 1 || !strings.Contains(stderr, "patch needed") {
		t.Errorf("--check before: exit %d %s", code, stderr)
	}
	out, _, code := testenv.Run(t, "", "pygrub", "patch", "--pygrub", script, "--dry-run")
	if code != 0 || !strings.Contains(out, "+++ "+grubConf) || !strings.Contains(out, "+                'linux16': 'kernel',") {
		t.Errorf("--dry-run: exit %d\n%s", code, out)
	}
	if now, _ := os.ReadFile(grubConf); !bytes.Equal(now, before) {
		t.Fatal("--dry-run changed the file")
	}

	out, stderr, code = testenv.Run(t, "", "pygrub", "patch", "--pygrub", script)
	if code != 0 || !strings.Contains(out, "patched (backup "+grubConf+".orig)") {
		t.Fatalf("patch: exit %d %s %s", code, out, stderr)
	}
	if now, _ := os.ReadFile(grubConf); string(now) != original {
		t.Error("patched GrubConf.py is not pygrub 4.17's")
	}
	if got, err := pygrubIsconfig(t, script, el7); err != nil || got != want {
		t.Errorf("patched pygrub on EL7: %v\n%s\nwant\n%s", err, got, want)
	}

	out, _, code = testenv.Run(t, "", "pygrub", "patch", "--pygrub", script)
	if code != 0 || !strings.Contains(out, "already patched") {
		t.Errorf("second patch: exit %d %s", code, out)
	}
	if _, err := os.Stat(grubConf + ".orig.1"); err == nil {
		t.Error("second run made another backup")
	}
	if _, _, code = testenv.Run(t, "", "pygrub", "patch", "--pygrub", script, "--check"); code != 0 {
		t.Errorf("--check after: exit %d", code)
	}

	// Unexpected code: refused, the line shown, nothing changed.
	odd := strings.Replace(original, `(.*?)["\'] (.*){`, `([^"\']*)["\'] (.*){`, 1)
	os.WriteFile(grubConf, []byte(odd), 0o644)
	_, stderr, code = testenv.Run(t, "", "pygrub", "patch", "--pygrub", grubConf)
	if code != 1 || !strings.Contains(stderr, "unexpected menuentry regex") || !strings.Contains(stderr, `([^"\']*)`) {
		t.Errorf("refusal: exit %d %q", code, stderr)
	}
	if now, _ := os.ReadFile(grubConf); string(now) != odd {
		t.Error("a refused patch changed the file")
	}
}

func TestPygrubMenuLstCommand(t *testing.T) {
	root := pygrubEL7Guest(t)
	target := filepath.Join(root, "boot/grub/menu.lst")
	// As docs/pygrub.md says: the folder must be there (-w makes none).
	if err := os.Mkdir(filepath.Dir(target), 0o755); err != nil {
		t.Fatal(err)
	}

	out, _, code := testenv.Run(t, "", "pygrub", "menulst", "--root", root, "-w", target, "--dry-run")
	if code != 0 || !strings.HasPrefix(out, "# would write "+target) {
		t.Errorf("--dry-run: exit %d\n%s", code, out)
	}
	if _, err := os.Stat(target); err == nil {
		t.Fatal("--dry-run wrote menu.lst")
	}
	_, stderr, code := testenv.Run(t, "", "pygrub", "menulst", "--root", root, "-w", target)
	if code != 0 || !strings.Contains(stderr, "3 entries, default 1") {
		t.Fatalf("menulst -w: exit %d %s", code, stderr)
	}
	out, _, code = testenv.Run(t, "", "pygrub", "check", "--xen", "4.1", root, "-o", "json")
	var rep struct {
		Config   string
		Parser   string
		Default  int
		Bootable bool
		Entries  []struct{ Kernel string }
	}
	json.Unmarshal([]byte(out), &rep)
	// The tree holds configs but no kernel files: pygrub would find none
	// to load, so check says not bootable and exits 1.
	if code != 1 || rep.Bootable || rep.Config != "/boot/grub/menu.lst" || rep.Parser != "grub-legacy" || rep.Default != 1 || rep.Entries[1].Kernel != "/vmlinuz-3.11.7-300.fc20.x86_64" {
		t.Errorf("4.1 reads the written menu.lst as %+v (exit %d)", rep, code)
	}

	fromFile, _, code := testenv.Run(t, "", "pygrub", "menulst", "--grub-cfg", filepath.Join(root, "boot/grub2/grub.cfg"))
	written, _ := os.ReadFile(target)
	// The same menu as from --root; only the header names another source.
	body := func(s string) string { _, b, _ := strings.Cut(s, "\ndefault="); return b }
	if code != 0 || body(fromFile) == "" || body(fromFile) != body(string(written)) {
		t.Errorf("--grub-cfg: exit %d\n%s\nwant the entries of\n%s", code, fromFile, written)
	}

	out, _, code = testenv.Run(t, "", "pygrub", "menulst", "--kickstart")
	if code != 0 || !strings.HasPrefix(out, "%post") || !strings.HasSuffix(out, "%end\n") || !strings.Contains(out, "/etc/kernel/postinst.d/") {
		t.Errorf("--kickstart: exit %d\n%s", code, out)
	}
	// The documented form: --kickstart beside --root DIR (the installed
	// system as %post sees it) and -w FILE (where the section goes).
	ksFile := filepath.Join(t.TempDir(), "post.ks")
	if _, stderr, code := testenv.Run(t, "", "pygrub", "menulst", "--root", "/mnt/sysimage", "--kickstart", "-w", ksFile); code != 0 {
		t.Errorf("--root /mnt/sysimage --kickstart -w: exit %d %s", code, stderr)
	} else if ks, _ := os.ReadFile(ksFile); !strings.HasPrefix(string(ks), "%post --nochroot ") || !strings.Contains(string(ks), `R="${OPSCTL_MENULST_ROOT:-/mnt/sysimage}"`) {
		t.Errorf("--root /mnt/sysimage --kickstart wrote:\n%s", ks)
	}
	if chrooted, _, code := testenv.Run(t, "", "pygrub", "menulst", "--root", "/", "--kickstart"); code != 0 || chrooted != out {
		t.Errorf("--root / --kickstart: exit %d, not the same section as --kickstart alone", code)
	}
	for _, args := range [][]string{
		{"pygrub", "menulst"},
		{"pygrub", "menulst", "--root", root, "--grub-cfg", "x"},
		{"pygrub", "menulst", "--kickstart", "--grub-cfg", "x"},
	} {
		if _, stderr, code := testenv.Run(t, "", args...); code != 2 {
			t.Errorf("%v: exit %d %s", args, code, stderr)
		}
	}
	if _, stderr, code := testenv.Run(t, "", "pygrub", "menulst", "--grub-cfg", filepath.Join(pygrubCorpus, "rhel8-kernelopts.cfg")); code != 1 || !strings.Contains(stderr, "runs blscfg") || !strings.Contains(stderr, "use --root") {
		t.Errorf("a BLS grub.cfg alone: exit %d %s", code, stderr)
	}
}

// pygrubEnsureLibvirtQemuUser creates the system user and group libvirt-qemu that
// Debian's libvirtd needs to start its qemu driver (libvirt-daemon-system
// normally creates them).
func pygrubEnsureLibvirtQemuUser(t *testing.T) {
	t.Helper()
	if exec.Command("getent", "group", "libvirt-qemu").Run() != nil {
		if out, err := exec.Command("groupadd", "-r", "libvirt-qemu").CombinedOutput(); err != nil {
			t.Fatalf("groupadd libvirt-qemu: %v %s", err, out)
		}
	}
	if exec.Command("getent", "passwd", "libvirt-qemu").Run() != nil {
		if out, err := exec.Command("useradd", "-r", "-g", "libvirt-qemu", "-d", "/var/lib/libvirt", "-s", "/usr/sbin/nologin", "libvirt-qemu").CombinedOutput(); err != nil {
			t.Fatalf("useradd libvirt-qemu: %v %s", err, out)
		}
	}
}

// pygrubStartLibvirtd runs a libvirtd in the foreground whose sockets live in a
// temporary folder and need no authentication; it is stopped when the test
// ends. It returns the read-write socket.
func pygrubStartLibvirtd(t *testing.T) string {
	t.Helper()
	testenv.NeedRoot(t)
	libvirtd := testenv.Need(t, "libvirtd", "libvirt-daemon")

	// One libvirtd test at a time on this machine: they share /run/libvirt
	// (and would race to create the libvirt-qemu user).
	lock, err := os.OpenFile("/tmp/opsctl-libvirtd-test.lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Flock(int(lock.Fd()), syscall.LOCK_UN); lock.Close() })
	pygrubEnsureLibvirtQemuUser(t)

	dir, err := os.MkdirTemp("", "opsctl-lv-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	conf := filepath.Join(dir, "libvirtd.conf")
	os.WriteFile(conf, []byte(fmt.Sprintf("unix_sock_dir = %q\nauth_unix_rw = \"none\"\nauth_unix_ro = \"none\"\nunix_sock_group = \"root\"\nlog_outputs = \"3:stderr\"\n", dir)), 0o600)
	logFile, _ := os.Create(filepath.Join(dir, "libvirtd.log"))
	cmd := exec.Command(libvirtd, "-f", conf, "--pid-file", filepath.Join(dir, "libvirtd.pid"))
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// exited is closed when libvirtd has exited (waitErr set), so that both
	// the start-up loop and the cleanup can see it.
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
		logFile.Close()
		if _, err := os.Stat(filepath.Join(dir, "libvirt-sock")); err == nil {
			t.Error("libvirtd left its socket behind")
		}
	})
	sock := filepath.Join(dir, "libvirt-sock")
	// The socket file appears at bind(); wait until it accepts.
	accepts := testenv.WaitUntil(t, 30*time.Second, func() bool {
		if conn, err := net.Dial("unix", sock); err == nil {
			conn.Close()
			return true
		}
		select {
		case <-exited:
			log, _ := os.ReadFile(logFile.Name())
			t.Fatalf("libvirtd exited: %v\n%s", waitErr, log)
		default:
		}
		return false
	})
	if !accepts {
		log, _ := os.ReadFile(logFile.Name())
		t.Fatalf("libvirtd did not create %s\n%s", sock, log)
	}
	return sock
}

func pygrubMkext2(t *testing.T, files map[string]string) string {
	t.Helper()
	mke2fs := testenv.Need(t, "mke2fs", "e2fsprogs")
	root := t.TempDir()
	pygrubWriteTree(t, root, files)
	img := filepath.Join(t.TempDir(), "disk.img")
	if out, err := exec.Command(mke2fs, "-q", "-F", "-t", "ext2", "-d", root, img, "8M").CombinedOutput(); err != nil {
		t.Fatalf("mke2fs: %v %s", err, out)
	}
	return img
}

// TestPygrubScanAgainstLibvirtd asks a real libvirtd (test driver, node XML
// with PV guests booted by pygrub and an HVM guest) through go-libvirt and
// checks the disks with the real pygrub.
func TestPygrubScanAgainstLibvirtd(t *testing.T) {
	testenv.Need(t, pygrub417, "xen-utils-4.17")
	good := pygrubMkext2(t, map[string]string{
		"/grub2/grub.cfg":                       pygrubReadCorpus(t, "centos7.cfg"),
		"/vmlinuz-3.10.0-1160.el7.x86_64":       "k",
		"/initramfs-3.10.0-1160.el7.x86_64.img": "i",
	})
	swap := pygrubMkext2(t, map[string]string{"/README": "not a boot disk\n"})
	broken := pygrubMkext2(t, map[string]string{"/boot/grub/grub.cfg": pygrubReadCorpus(t, "rhel8-kernelopts.cfg")})
	// The /boot file system of an EL8 guest: its grub.cfg runs blscfg.
	bls := pygrubMkext2(t, map[string]string{
		"/grub2/grub.cfg":                      pygrubReadCorpus(t, "rhel8-kernelopts.cfg"),
		"/loader/entries/x-4.18.0-80.el8.conf": "title RHEL 8\nlinux /vmlinuz-4.18.0-80.el8\noptions $kernelopts\n",
		"/vmlinuz-4.18.0-80.el8":               "k",
	})
	sock := pygrubStartLibvirtd(t)

	node := filepath.Join(t.TempDir(), "node.xml")
	pv := func(name, bootloader string, disks ...string) string {
		var b strings.Builder
		fmt.Fprintf(&b, "<domain type='test'><name>%s</name><memory>524288</memory><bootloader>%s</bootloader><os><type>xen</type></os><devices>", name, bootloader)
		for i, d := range disks {
			fmt.Fprintf(&b, "<disk type='file' device='disk'><source file='%s'/><target dev='xvd%c' bus='xen'/></disk>", d, 'a'+i)
		}
		b.WriteString("<disk type='file' device='cdrom'><source file='/srv/iso/install.iso'/><target dev='xvdd' bus='xen'/><readonly/></disk></devices></domain>")
		return b.String()
	}
	xml := "<node>" +
		pv("el7guest", pygrub417, good, swap) +
		pv("brokenguest", "pygrub", broken) +
		pv("blsguest", pygrub417, bls) +
		pv("oldhost", "/usr/lib/xen-4.1/bin/pygrub", good) +
		"<domain type='test'><name>hvmguest</name><memory>524288</memory><os><type>hvm</type><boot dev='hd'/></os><devices><disk type='file' device='disk'><source file='" + good + "'/><target dev='hda' bus='ide'/></disk></devices></domain>" +
		"</node>"
	os.WriteFile(node, []byte(xml), 0o644)
	uri := "test://" + node + "?socket=" + sock

	out, stderr, code := testenv.Run(t, "", "pygrub", "scan", "--connect", uri, "-o", "json")
	if code != 0 {
		t.Fatalf("scan: exit %d %s", code, stderr)
	}
	var guests []struct {
		Domain     string
		Bootloader string
		Disks      []string
		Check      *struct {
			Bootable bool
			Detail   string
		}
	}
	if err := json.Unmarshal([]byte(out), &guests); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if len(guests) != 4 || guests[0].Domain != "blsguest" || guests[1].Domain != "brokenguest" || guests[2].Domain != "el7guest" || guests[3].Domain != "oldhost" {
		t.Fatalf("guests %+v", guests)
	}
	if g := guests[2]; g.Bootloader != pygrub417 || len(g.Disks) != 2 || g.Disks[0] != good || g.Disks[1] != swap || g.Check != nil {
		t.Errorf("el7guest %+v", g)
	}
	if strings.Contains(out, `"check"`) {
		t.Error("check reported without --check")
	}

	out, stderr, code = testenv.Run(t, "", "pygrub", "scan", "--connect", uri, "--check", "-o", "json")
	if code != 1 || !strings.Contains(stderr, "3 of 4 pygrub guests would not boot: blsguest, brokenguest, oldhost") {
		t.Errorf("scan --check: exit %d %s", code, stderr)
	}
	json.Unmarshal([]byte(out), &guests)
	byName := map[string]int{}
	for i, g := range guests {
		byName[g.Domain] = i
	}
	el7 := guests[byName["el7guest"]].Check
	if el7 == nil || !el7.Bootable || !strings.Contains(el7.Detail, "/grub2/grub.cfg, 2 entries") || !strings.Contains(el7.Detail, swap+": pygrub: couldn't find bootloader config file") {
		t.Errorf("el7guest check %+v", el7)
	}
	if c := guests[byName["brokenguest"]].Check; c == nil || c.Bootable || !strings.Contains(c.Detail, broken) || !strings.Contains(c.Detail, "too many values to unpack") {
		t.Errorf("brokenguest check %+v", c)
	}
	// pygrub cannot tell more than that its failure is an EL8/EL9 one;
	// the detail names the fix and check on the mounted guest.
	if c := guests[byName["blsguest"]].Check; c == nil || c.Bootable || !strings.Contains(c.Detail, bls+": pygrub reads /grub2/grub.cfg") || !strings.Contains(c.Detail, "opsctl pygrub menulst --root DIR --install") {
		t.Errorf("blsguest check %+v", c)
	}
	if c := guests[byName["oldhost"]].Check; c == nil || c.Bootable || !strings.Contains(c.Detail, "/usr/lib/xen-4.1/bin/pygrub not found") {
		t.Errorf("oldhost check %+v", c)
	}

	out, _, code = testenv.Run(t, "", "pygrub", "scan", "--connect", uri, "--check")
	if code != 1 || !strings.Contains(out, "DOMAIN") || !strings.Contains(out, "el7guest") || !strings.Contains(out, "NO") {
		t.Errorf("text: exit %d\n%s", code, out)
	}

	_, stderr, code = testenv.Run(t, "", "pygrub", "scan", "--connect", "test:///default?socket="+filepath.Join(t.TempDir(), "none"))
	if code != 75 || !strings.Contains(stderr, "no such file or directory") {
		t.Errorf("unreachable libvirt: exit %d %s", code, stderr)
	}
	for _, bad := range []string{"::bad", "xen+bogus:///system"} {
		if _, _, code = testenv.Run(t, "", "pygrub", "scan", "--connect", bad); code != 2 {
			t.Errorf("bad URI %s: exit %d", bad, code)
		}
	}
}

func TestPygrubScanMenuLstPatchFlags(t *testing.T) {
	if scan, err := pygrubParseFlags(t, NewCmdPygrubScan); err != nil || scan.Connect != "xen:///system" || scan.Check || scan.Timeout != 30*time.Second {
		t.Errorf("scan defaults %+v %v", scan, err)
	}
	if scan, err := pygrubParseFlags(t, NewCmdPygrubScan, "-c", "xen:///system?socket=/run/x", "--check", "--pygrub", "/p"); err != nil || scan.Connect != "xen:///system?socket=/run/x" || !scan.Check || scan.Pygrub != "/p" {
		t.Errorf("scan flags %+v %v", scan, err)
	}
	if ml, err := pygrubParseFlags(t, NewCmdPygrubMenuLst, "--root", "/mnt", "-w", "/mnt/boot/grub/menu.lst"); err != nil || ml.Root != "/mnt" || ml.Write != "/mnt/boot/grub/menu.lst" || ml.Kickstart {
		t.Errorf("menulst flags %+v %v", ml, err)
	}
	if pa, err := pygrubParseFlags(t, NewCmdPygrubPatch, "--check", "--dry-run", "--pygrub", "/usr/lib/xen-4.1/bin/pygrub"); err != nil || !pa.Check || !pa.DryRun || pa.Pygrub != "/usr/lib/xen-4.1/bin/pygrub" {
		t.Errorf("patch flags %+v %v", pa, err)
	}
	for _, sub := range []string{"check", "patch", "menulst", "scan"} {
		out, _, code := runForTest("pygrub", sub, "--help")
		if code != 0 || !strings.Contains(out, "Examples:") {
			t.Errorf("pygrub %s --help: exit %d, no examples", sub, code)
		}
	}
	if _, _, code := runForTest("pygrub"); code != 2 {
		t.Errorf("pygrub without subcommand: exit %d", code)
	}
}

// TestPygrubErrorsShowTheFlags: pygrubfix names its inputs in Go terms
// (Release.Name, FindParsers.pygrub, PlanInstall.hook...); the user reads
// the flags they typed, in the messages of before.
func TestPygrubErrorsShowTheFlags(t *testing.T) {
	saved := pygrubfix.DefaultPygrubs
	pygrubfix.DefaultPygrubs = []string{filepath.Join(t.TempDir(), "no-xen-*/bin/pygrub")}
	t.Cleanup(func() { pygrubfix.DefaultPygrubs = saved })
	err := runPygrubPatch(&PygrubPatchOptions{Factory: pygrubTestFactory(), Check: true})
	if want := "pygrub patch: no pygrub found in " + pygrubfix.DefaultPygrubs[0] + " (give --pygrub PATH)"; err == nil || err.Error() != want || cli.ExitCode(err) != 1 {
		t.Errorf("patch without a pygrub: %v (exit %d), want %q", err, cli.ExitCode(err), want)
	}

	el7 := pygrubGrub2Guest(t, "centos7.cfg")
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"pygrub", "menulst", "--root", el7, "--install-hook"}, 1, "pygrub menulst: in the guest " + el7 + ": --install-hook: no Boot Loader Spec entries (an EL7-style guest installs kernels through new-kernel-pkg, not kernel-install): keep its menu.lst current with the --kickstart %post section instead"},
		{[]string{"pygrub", "check", "--xen", "3.4", el7}, 2, `--xen "3.4": expected 4.17 or 4.1`},
		{[]string{"pygrub", "scan", "--connect", "nope"}, 2, `--connect "nope": expected a libvirt URI such as xen:///system`},
		{[]string{"pygrub", "scan", "--connect", "xen+bogus:///system"}, 2, `--connect "xen+bogus:///system": unsupported transport "bogus"`},
	} {
		_, stderr, code := testenv.Run(t, "", c.args...)
		if code != c.code || !strings.Contains(stderr, c.want) {
			t.Errorf("%v: exit %d %q; want exit %d and %q", c.args, code, stderr, c.code, c.want)
		}
	}
}
