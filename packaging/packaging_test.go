// Package packaging_test builds the Debian package and the `make install`
// tree and checks them with the tools admins trust: dpkg, lintian, man,
// systemd-analyze and a Containerfile linter.
package packaging_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/opsctl/opsctl/internal/testenv"
)

// The systemd units docs/install.md lists, all shipped in the package.
var units = []string{
	"opsctl-chain.service",
	"opsctl-chain-sync.service",
	"opsctl-chain-sync.timer",
	"opsctl-imap-auth.socket",
	"opsctl-imap-auth.service",
	"opsctl-lvm-cache-metrics.service",
	"opsctl-lvm-cache-metrics.timer",
}

func run(t *testing.T, dir string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// built is the package `make deb` made for this test run, once: the tests
// of the package and of its installation share it.
var built struct {
	once sync.Once
	dir  string
	deb  string
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if built.dir != "" {
		os.RemoveAll(built.dir)
	}
	os.Exit(code)
}

// makeDeb runs `make deb` with every product in a temp folder, so a test
// never rewrites the bin/opsctl other tests are running.
func makeDeb(t *testing.T) string {
	t.Helper()
	built.once.Do(func() {
		if built.dir, built.err = os.MkdirTemp("", "opsctl-deb-"); built.err != nil {
			return
		}
		cmd := exec.Command("make", "--no-print-directory", "deb", "BIN="+filepath.Join(built.dir, "opsctl"),
			"BUILD="+filepath.Join(built.dir, "build"), "DIST="+filepath.Join(built.dir, "dist"))
		cmd.Dir = testenv.ModuleRoot()
		if out, err := cmd.CombinedOutput(); err != nil {
			built.err = fmt.Errorf("make deb: %v\n%s", err, out)
			return
		}
		debs, _ := filepath.Glob(filepath.Join(built.dir, "dist", "*.deb"))
		if len(debs) != 1 {
			built.err = fmt.Errorf("make deb made %d packages: %v", len(debs), debs)
			return
		}
		built.deb = debs[0]
	})
	if built.err != nil {
		t.Fatal(built.err)
	}
	return built.deb
}

func TestDebianPackage(t *testing.T) {
	testenv.Need(t, "dpkg-deb", "dpkg")
	lintian := testenv.Need(t, "lintian", "lintian")
	testenv.Need(t, "man", "man-db")
	analyze := testenv.Need(t, "systemd-analyze", "systemd")
	deb := makeDeb(t)
	tmp := t.TempDir()

	listing := run(t, "", "dpkg-deb", "-c", deb)
	want := []string{
		"./usr/bin/opsctl",
		"./usr/share/man/man1/opsctl.1.gz",
		"./usr/share/man/man1/opsctl-chain.1.gz",
		"./usr/share/man/man1/opsctl-lvm.1.gz",
		"./usr/share/man/man1/opsctl-sock.1.gz",
		"./usr/share/man/man1/opsctl-pygrub.1.gz",
		"./usr/share/man/man1/opsctl-imap-auth.1.gz",
		"./usr/share/bash-completion/completions/opsctl",
		"./usr/share/zsh/vendor-completions/_opsctl",
		"./usr/share/fish/vendor_completions.d/opsctl.fish",
		"./usr/share/doc/opsctl/copyright",
		"./etc/default/opsctl-chain",
		"./etc/default/opsctl-imap-auth",
		"./etc/default/opsctl-lvm-cache-metrics",
		"./usr/lib/x86_64-linux-gnu/wireshark/extcap/opsctl-sock -> ../../../../bin/opsctl",
	}
	for _, u := range units {
		want = append(want, "./lib/systemd/system/"+u)
	}
	for _, path := range want {
		if !regexp.MustCompile(`(?m) ` + regexp.QuoteMeta(path) + `$`).MatchString(listing) {
			t.Errorf("dpkg-deb -c does not list %s", path)
		}
	}
	conffiles := run(t, "", "dpkg-deb", "-I", deb, "conffiles")
	for _, c := range []string{"/etc/default/opsctl-chain", "/etc/default/opsctl-imap-auth", "/etc/default/opsctl-lvm-cache-metrics"} {
		if !strings.Contains(conffiles, c) {
			t.Errorf("%s is not a conffile: %q", c, conffiles)
		}
	}
	// The maintainer scripts run deb-systemd-helper and deb-systemd-invoke.
	for _, script := range []string{"postinst", "prerm", "postrm"} {
		if text := run(t, "", "dpkg-deb", "-I", deb, script); !strings.HasPrefix(text, "#!/bin/sh\n") || !strings.Contains(text, "\nset -e\n") {
			t.Errorf("%s: want a /bin/sh script with set -e:\n%s", script, text)
		}
	}
	if depends := run(t, "", "dpkg-deb", "-f", deb, "Depends"); !strings.Contains(depends, "init-system-helpers") {
		t.Errorf("Depends: %q, want init-system-helpers (deb-systemd-helper)", depends)
	}

	t.Run("lintian has no errors or warnings", func(t *testing.T) {
		out, err := exec.Command(lintian, "--tag-display-limit", "0", deb).CombinedOutput()
		var tags []string
		for _, line := range strings.Split(string(out), "\n") {
			if strings.HasPrefix(line, "E: ") || strings.HasPrefix(line, "W: ") {
				tags = append(tags, line)
			}
		}
		if err != nil || len(tags) > 0 {
			t.Errorf("lintian %s: %v\n%s", deb, err, strings.Join(tags, "\n"))
		}
	})

	// An otherwise empty root with the files of the package: what they
	// need (the static binary, the units' man pages) must be all in the
	// package. dpkg-deb -x unpacks what dpkg -i would; dpkg -i itself
	// would run the maintainer scripts, which need /bin/sh and
	// deb-systemd-helper (perl): they are tested on this machine's own
	// root in TestPackageInstallUpgradeRemovePurge.
	root := filepath.Join(tmp, "root")
	run(t, "", "dpkg-deb", "-x", deb, root)

	t.Run("installed binary runs", func(t *testing.T) {
		out := run(t, "", filepath.Join(root, "usr/bin/opsctl"), "version")
		if !strings.HasPrefix(out, "opsctl ") {
			t.Errorf("opsctl version: %q", out)
		}
	})

	t.Run("Wireshark's extcap link runs opsctl as an extcap", func(t *testing.T) {
		// What Wireshark runs to list its interfaces: the link, by its name.
		out := run(t, "", filepath.Join(root, "usr/lib/x86_64-linux-gnu/wireshark/extcap/opsctl-sock"), "--extcap-interfaces", "--extcap-version=4.0")
		if !strings.Contains(out, "interface {value=opsctl_sock}") {
			t.Errorf("opsctl-sock --extcap-interfaces: %q", out)
		}
	})

	t.Run("every man page renders without warnings", func(t *testing.T) {
		pages, _ := filepath.Glob(filepath.Join(root, "usr/share/man/man1/*.1.gz"))
		if len(pages) < 6 {
			t.Fatalf("only %d man pages", len(pages))
		}
		for _, page := range pages {
			cmd := exec.Command("man", "--warnings", "-l", page)
			cmd.Env = append(os.Environ(), "MANWIDTH=80")
			var stderr strings.Builder
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			name := strings.TrimSuffix(filepath.Base(page), ".1.gz")
			if err != nil || stderr.Len() > 0 || !strings.Contains(string(out), "NAME") {
				t.Errorf("man -l %s: %v %s", name, err, stderr.String())
			}
		}
	})

	t.Run("systemd-analyze verify passes for every unit", func(t *testing.T) {
		// verify resolves the dependencies of a unit (sysinit.target, ...)
		// inside --root: give the root the host's system units, as any
		// Debian system has them.
		sysdir := filepath.Join(root, "lib/systemd/system")
		hostUnits, _ := filepath.Glob("/lib/systemd/system/*")
		for _, u := range hostUnits {
			dst := filepath.Join(sysdir, filepath.Base(u))
			if _, err := os.Lstat(dst); err == nil {
				continue
			}
			if target, err := os.Readlink(u); err == nil {
				os.Symlink(target, dst)
			} else if st, err := os.Stat(u); err == nil && !st.IsDir() {
				data, _ := os.ReadFile(u)
				os.WriteFile(dst, data, 0o644)
			}
		}
		for _, unit := range units {
			// --man=no: the host's man does not see the root; the man:
			// references are checked against the package below.
			out, err := exec.Command(analyze, "verify", "--man=no", "--root="+root, unit).CombinedOutput()
			if err != nil || len(strings.TrimSpace(string(out))) > 0 {
				t.Errorf("systemd-analyze verify %s: %v\n%s", unit, err, out)
			}
			text, _ := os.ReadFile(filepath.Join(sysdir, unit))
			for _, m := range regexp.MustCompile(`man:([a-z-]+)\(1\)`).FindAllStringSubmatch(string(text), -1) {
				if _, err := os.Stat(filepath.Join(root, "usr/share/man/man1", m[1]+".1.gz")); err != nil {
					t.Errorf("%s: Documentation=man:%s(1) is not in the package", unit, m[1])
				}
			}
		}
	})
}

func TestMakeInstallHonoursPrefixAndDestdir(t *testing.T) {
	tmp := t.TempDir()
	dest := filepath.Join(tmp, "dest")
	run(t, testenv.ModuleRoot(), "make", "--no-print-directory", "install", "PREFIX=/usr/local", "DESTDIR="+dest,
		"BIN="+filepath.Join(tmp, "opsctl"), "BUILD="+filepath.Join(tmp, "build"))
	for _, path := range []string{
		"usr/local/bin/opsctl",
		"usr/local/share/man/man1/opsctl-chain.1.gz",
		"usr/local/share/bash-completion/completions/opsctl",
		// Debian's zsh searches /usr/local/share/zsh/site-functions, not
		// /usr/local/share/zsh/vendor-completions (vendor-* is for packages).
		"usr/local/share/zsh/site-functions/_opsctl",
		"usr/local/share/fish/vendor_completions.d/opsctl.fish",
		"etc/default/opsctl-chain",
	} {
		if _, err := os.Stat(filepath.Join(dest, path)); err != nil {
			t.Errorf("make install: %v", err)
		}
	}
	var installed []string
	for _, u := range units {
		text, err := os.ReadFile(filepath.Join(dest, "usr/local/lib/systemd/system", u))
		if err != nil {
			t.Errorf("make install: %v", err)
			continue
		}
		installed = append(installed, u)
		if strings.Contains(string(text), "/usr/bin/opsctl") || !strings.Contains(string(text), "/usr/local/bin/opsctl") && strings.HasSuffix(u, ".service") {
			t.Errorf("%s does not run /usr/local/bin/opsctl", u)
		}
	}
	if !slices.Equal(installed, units) {
		t.Errorf("installed units %v, want %v", installed, units)
	}
	// An admin's edited /etc/default file survives a second install.
	conf := filepath.Join(dest, "etc/default/opsctl-chain")
	os.WriteFile(conf, []byte("OPSCTL_GITLAB_GROUP=mine\n"), 0o644)
	run(t, testenv.ModuleRoot(), "make", "--no-print-directory", "install", "PREFIX=/usr/local", "DESTDIR="+dest,
		"BIN="+filepath.Join(tmp, "opsctl"), "BUILD="+filepath.Join(tmp, "build"))
	if data, _ := os.ReadFile(conf); string(data) != "OPSCTL_GITLAB_GROUP=mine\n" {
		t.Errorf("make install overwrote %s: %q", conf, data)
	}
}

func TestContainerfileLints(t *testing.T) {
	npx := testenv.Need(t, "npx", "npm")
	cmd := exec.Command(npx, "-y", "dockerfilelint@1.8.0", "packaging/Containerfile")
	cmd.Dir = testenv.ModuleRoot()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("dockerfilelint packaging/Containerfile: %v\n%s", err, out)
	}
	text, _ := os.ReadFile(filepath.Join(testenv.ModuleRoot(), "packaging/Containerfile"))
	// The receiver runs as a non-root user from the static binary alone.
	for _, want := range []string{"\nFROM scratch\n", "\nUSER 65532:65532\n", "RUN make build "} {
		if !strings.Contains(string(text), want) {
			t.Errorf("Containerfile lacks %q", strings.TrimSpace(want))
		}
	}
}
