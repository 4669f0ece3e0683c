package packaging_test

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/opsctl/opsctl/internal/testenv"
)

// hostRoot is this machine's root file system under an overlay, in a mount
// namespace of its own: dpkg, /bin/sh, perl, deb-systemd-helper and the
// dpkg database are the machine's, and every write lands in a temp folder.
// So the package is installed, upgraded, removed and purged by the real
// dpkg with the real helpers, and neither the machine nor tests running
// beside this one (other checkouts, apt under the test-deps lock) see any
// of it. /run and /tmp are empty tmpfs: no systemd runs in the root
// unless a test makes /run/systemd/system.
type hostRoot struct {
	t       *testing.T
	dir     string
	pid     int
	nsenter string
}

func newHostRoot(t *testing.T) *hostRoot {
	t.Helper()
	testenv.NeedRoot(t)
	unshare := testenv.Need(t, "unshare", "util-linux")
	nsenter := testenv.Need(t, "nsenter", "util-linux")
	testenv.Need(t, "dpkg", "dpkg")
	testenv.Need(t, "deb-systemd-helper", "init-system-helpers")
	tmp := t.TempDir()
	dir := filepath.Join(tmp, "root")
	for _, d := range []string{dir, filepath.Join(tmp, "upper"), filepath.Join(tmp, "work")} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	setup := fmt.Sprintf(`set -e
mount -t overlay overlay -o lowerdir=/,upperdir=%[1]s/upper,workdir=%[1]s/work %[2]s
mount -t proc proc %[2]s/proc
mount --rbind /dev %[2]s/dev
mount -t tmpfs tmpfs %[2]s/run
mount -t tmpfs tmpfs %[2]s/tmp
echo ready
exec cat >/dev/null`, tmp, dir)
	// The namespace lives as long as this process, which waits for its
	// stdin to close: at the end of the test.
	holder := exec.Command(unshare, "--mount", "--propagation", "private", "sh", "-c", setup)
	stdin, err := holder.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := holder.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	holder.Stderr = &stderr
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		holder.Wait()
	})
	if line, _ := bufio.NewReader(stdout).ReadString('\n'); line != "ready\n" {
		stdin.Close()
		holder.Wait()
		testenv.Missing(t, "no overlay of / in a mount namespace: "+strings.TrimSpace(stderr.String()))
	}
	go io.Copy(io.Discard, stdout)
	return &hostRoot{t: t, dir: dir, pid: holder.Process.Pid, nsenter: nsenter}
}

// command runs argv chrooted into the root, as dpkg runs maintainer scripts.
func (r *hostRoot) command(argv ...string) *exec.Cmd {
	cmd := exec.Command(r.nsenter, append([]string{"--target", fmt.Sprint(r.pid), "--mount", "--", "chroot", r.dir}, argv...)...)
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C"}
	return cmd
}

// run runs argv in the root and fails the test when it fails.
func (r *hostRoot) run(argv ...string) (stdout, stderr string) {
	r.t.Helper()
	cmd := r.command(argv...)
	var out, errOut strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		r.t.Fatalf("in the root: %s: %v\n%s%s", strings.Join(argv, " "), err, out.String(), errOut.String())
	}
	return out.String(), errOut.String()
}

// sh runs a shell script in the root.
func (r *hostRoot) sh(script string) string {
	r.t.Helper()
	out, _ := r.run("sh", "-ec", script)
	return out
}

// put copies a file of the machine into the root.
func (r *hostRoot) put(src, dst string) {
	r.t.Helper()
	cmd := exec.Command(r.nsenter, "--target", fmt.Sprint(r.pid), "--mount", "--", "cp", src, filepath.Join(r.dir, dst))
	if out, err := cmd.CombinedOutput(); err != nil {
		r.t.Fatalf("cp %s into the root: %v\n%s", src, err, out)
	}
}

// dpkg runs dpkg in the root and returns what the maintainer scripts said.
func (r *hostRoot) dpkg(args ...string) string {
	r.t.Helper()
	_, stderr := r.run(append([]string{"dpkg", "--force-confdef", "--force-confold"}, args...)...)
	return stderr
}

// opsctlLinks lists the symbolic links under /etc/systemd/system that
// point at an opsctl unit: what enabling a unit makes.
func (r *hostRoot) opsctlLinks() []string {
	r.t.Helper()
	out := r.sh(`find /etc/systemd/system -type l -lname '*opsctl-*' | sort`)
	return strings.Fields(out)
}

// helperState lists what deb-systemd-helper keeps about opsctl units.
func (r *hostRoot) helperState() []string {
	r.t.Helper()
	out := r.sh(`find /var/lib/systemd -path '*deb-systemd-*' -name '*opsctl*' 2>/dev/null | sort`)
	return strings.Fields(out)
}

func (r *hostRoot) exists(path string) bool {
	r.t.Helper()
	return r.command("test", "-e", path).Run() == nil || r.command("test", "-L", path).Run() == nil
}

// debVersions returns the package and the same package as a later
// version, for an upgrade.
func debVersions(t *testing.T) (first, second string) {
	t.Helper()
	first = makeDeb(t)
	tmp := t.TempDir()
	tree := filepath.Join(tmp, "tree")
	run(t, "", "dpkg-deb", "-R", first, tree)
	control := filepath.Join(tree, "DEBIAN", "control")
	text, err := os.ReadFile(control)
	if err != nil {
		t.Fatal(err)
	}
	version := strings.TrimSpace(run(t, "", "dpkg-deb", "-f", first, "Version"))
	if err := os.WriteFile(control, []byte(strings.Replace(string(text), "Version: "+version, "Version: "+version+"+1", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	second = filepath.Join(tmp, "opsctl-upgrade.deb")
	run(t, "", "dpkg-deb", "--root-owner-group", "-b", tree, second)
	return first, second
}

// The links `systemctl enable` makes for the units an admin uses.
var (
	chainLink  = "/etc/systemd/system/multi-user.target.wants/opsctl-chain.service"
	socketLink = "/etc/systemd/system/sockets.target.wants/opsctl-imap-auth.socket"
)

// TestPackageInstallUpgradeRemovePurge installs the package on this
// machine's root (see hostRoot), where systemd does not run: no unit is
// enabled by the install; units the admin enabled stay enabled through an
// upgrade and a remove; a purge leaves no link to an opsctl unit, no state
// of deb-systemd-helper and no state of opsctl but a resize journal.
func TestPackageInstallUpgradeRemovePurge(t *testing.T) {
	first, second := debVersions(t)
	r := newHostRoot(t)
	r.put(first, "/tmp/opsctl.deb")
	r.put(second, "/tmp/opsctl-upgrade.deb")

	r.dpkg("-i", "/tmp/opsctl.deb")
	if out, _ := r.run("opsctl", "version"); !strings.HasPrefix(out, "opsctl ") {
		t.Errorf("opsctl version in the root: %q", out)
	}
	if links := r.opsctlLinks(); len(links) != 0 {
		t.Errorf("the install enabled %v; no unit can run before it is configured", links)
	}
	// Tracked, so that a purge removes the links whoever makes them.
	for _, unit := range []string{"opsctl-chain.service", "opsctl-chain-sync.timer", "opsctl-imap-auth.service", "opsctl-imap-auth.socket", "opsctl-lvm-cache-metrics.timer"} {
		if !slices.Contains(r.helperState(), "/var/lib/systemd/deb-systemd-helper-enabled/"+unit+".dsh-also") {
			t.Errorf("deb-systemd-helper does not track %s: %v", unit, r.helperState())
		}
	}
	if r.exists("/var/lib/opsctl") {
		t.Error("the install made /var/lib/opsctl")
	}

	// The admin configures and enables the receiver and the socket; the
	// receiver runs and opsctl lvm keeps a journal and a lock.
	r.run("systemctl", "enable", "opsctl-chain.service", "opsctl-imap-auth.socket")
	if links := r.opsctlLinks(); !slices.Equal(links, []string{chainLink, socketLink}) {
		t.Fatalf("after systemctl enable: %v", links)
	}
	r.sh(`install -d -m 0700 /var/lib/private/opsctl/chain /var/lib/opsctl/lvm
echo runs >/var/lib/private/opsctl/chain/chain.db
ln -s ../private/opsctl/chain /var/lib/opsctl/chain
: >/var/lib/opsctl/lvm/storage-slowlv.lock
echo '{"version":1}' >/var/lib/opsctl/lvm/storage-slowlv.json`)

	r.dpkg("-i", "/tmp/opsctl-upgrade.deb")
	if links := r.opsctlLinks(); !slices.Equal(links, []string{chainLink, socketLink}) {
		t.Errorf("after the upgrade: %v, want the admin's %v", links, []string{chainLink, socketLink})
	}

	r.dpkg("-r", "opsctl")
	if r.exists("/lib/systemd/system/opsctl-chain.service") || r.exists("/usr/bin/opsctl") {
		t.Error("dpkg -r left the units or the binary")
	}
	// As with dh_installsystemd: the enable state survives a remove, for
	// a reinstall.
	if links := r.opsctlLinks(); !slices.Equal(links, []string{chainLink, socketLink}) {
		t.Errorf("after dpkg -r: %v", links)
	}
	if !r.exists("/var/lib/private/opsctl/chain/chain.db") {
		t.Error("dpkg -r removed the receiver's state; only a purge may")
	}

	said := r.dpkg("-P", "opsctl")
	if links := r.opsctlLinks(); len(links) != 0 {
		t.Errorf("after dpkg -P, links to opsctl units: %v", links)
	}
	if state := r.helperState(); len(state) != 0 {
		t.Errorf("after dpkg -P, deb-systemd-helper state: %v", state)
	}
	for _, gone := range []string{"/var/lib/private/opsctl", "/var/lib/opsctl/chain", "/var/lib/opsctl/lvm/storage-slowlv.lock"} {
		if r.exists(gone) {
			t.Errorf("after dpkg -P, %s is still there", gone)
		}
	}
	if !r.exists("/var/lib/opsctl/lvm/storage-slowlv.json") || !strings.Contains(said, "kept the journal of an interrupted lvm cache resize or flush: /var/lib/opsctl/lvm/storage-slowlv.json") {
		t.Errorf("a resize journal must outlive a purge, and be named: %q", said)
	}
	if out := r.sh(`dpkg-query -W -f '${Status}' opsctl 2>/dev/null || true`); strings.Contains(out, "installed") && !strings.Contains(out, "not-installed") {
		t.Errorf("dpkg status after the purge: %q", out)
	}
}

// TestPackageUnderSystemdMigratesAndRestarts installs the package where a
// build before it ran the chain receiver (its state behind the link
// /var/lib/opsctl -> private/opsctl) and where systemd runs (a systemctl
// that records its calls, a policy-rc.d that allows them): the state moves
// out of the service's folder, nothing is started on install, running units
// are restarted on upgrade and stopped on remove, and systemd reloads.
func TestPackageUnderSystemdMigratesAndRestarts(t *testing.T) {
	first, second := debVersions(t)
	r := newHostRoot(t)
	r.put(first, "/tmp/opsctl.deb")
	r.put(second, "/tmp/opsctl-upgrade.deb")
	r.sh(`mkdir -p /run/systemd/system
cat >/usr/bin/systemctl <<'EOF'
#!/bin/sh
echo "$*" >>/tmp/systemctl.log
EOF
printf '#!/bin/sh\nexit 0\n' >/usr/sbin/policy-rc.d
chmod 0755 /usr/bin/systemctl /usr/sbin/policy-rc.d
# What systemd made of StateDirectory=opsctl with DynamicUser=yes.
install -d -m 0700 -o 61234 -g 61234 /var/lib/private/opsctl
echo state >/var/lib/private/opsctl/chain.db
echo watched >/var/lib/private/opsctl/chain-watch.db
chown 61234:61234 /var/lib/private/opsctl/chain.db /var/lib/private/opsctl/chain-watch.db
ln -s private/opsctl /var/lib/opsctl
# An lvm cache journal root wrote there, through the link.
install -d -m 0700 /var/lib/private/opsctl/lvm
echo '{"version":1,"op":"resize","lv":"storage/slowlv"}' >/var/lib/private/opsctl/lvm/storage-slowlv.json`)
	systemctl := func() []string {
		t.Helper()
		out := r.sh(`cat /tmp/systemctl.log 2>/dev/null || true; : >/tmp/systemctl.log`)
		return strings.Split(strings.TrimSpace(out), "\n")
	}

	r.dpkg("-i", "/tmp/opsctl.deb")
	if calls := systemctl(); !slices.Equal(calls, []string{"--system daemon-reload"}) {
		t.Errorf("systemctl calls of the install: %q; want a reload and no start", calls)
	}
	if out := r.sh(`stat -c '%F %U %a' /var/lib/opsctl /var/lib/opsctl/lvm /var/lib/private/opsctl
cat /var/lib/private/opsctl/chain/chain.db /var/lib/private/opsctl/chain/chain-watch.db /var/lib/opsctl/lvm/storage-slowlv.json
ls /var/lib/private/opsctl`); out != "directory root 755\ndirectory root 700\ndirectory root 755\nstate\nwatched\n"+
		`{"version":1,"op":"resize","lv":"storage/slowlv"}`+"\nchain\n" {
		t.Errorf("after the install over the old state layout:\n%s", out)
	}
	// opsctl takes the default state dir again: the journal is there.
	cmd := r.command("opsctl", "lvm", "--lvm", "/bin/false", "cache", "remove", "storage/slowlv", "--dry-run")
	out, _ := cmd.CombinedOutput()
	if !strings.Contains(string(out), "an interrupted resize of storage/slowlv is journaled in /var/lib/opsctl/lvm/storage-slowlv.json") {
		t.Errorf("opsctl lvm with the migrated state dir: %s", out)
	}

	r.dpkg("-i", "/tmp/opsctl-upgrade.deb")
	if calls := systemctl(); !slices.Equal(calls, []string{"--system daemon-reload", "try-restart opsctl-chain.service opsctl-chain-sync.timer opsctl-imap-auth.service opsctl-lvm-cache-metrics.timer"}) {
		t.Errorf("systemctl calls of the upgrade: %q; want a reload and a restart of what runs", calls)
	}

	r.dpkg("-r", "opsctl")
	if calls := systemctl(); !slices.Equal(calls, []string{
		"stop opsctl-chain-sync.timer opsctl-chain-sync.service opsctl-chain.service opsctl-imap-auth.socket opsctl-imap-auth.service opsctl-lvm-cache-metrics.timer opsctl-lvm-cache-metrics.service",
		"--system daemon-reload"}) {
		t.Errorf("systemctl calls of the remove: %q; want every unit stopped, then a reload", calls)
	}

	r.sh(`rm /var/lib/opsctl/lvm/storage-slowlv.json`)
	r.dpkg("-P", "opsctl")
	for _, gone := range []string{"/var/lib/private/opsctl", "/var/lib/opsctl"} {
		if r.exists(gone) {
			t.Errorf("after dpkg -P, %s is still there", gone)
		}
	}
}
