package pygrubfix

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"

	"github.com/opsctl/opsctl/internal/testenv"
)

// guestFIFO, as the content of a guestTree file, makes it a FIFO.
const guestFIFO = "\x00fifo"

// guestTree writes files (guest path -> content; content "->target" makes a
// symlink, guestFIFO a FIFO) under a new folder.
func guestTree(t testing.TB, files map[string]string) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), "root")
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	for p, content := range files {
		host := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(host), 0o755); err != nil {
			t.Fatal(err)
		}
		if target, ok := strings.CutPrefix(content, "->"); ok {
			if err := os.Symlink(target, host); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if content == guestFIFO {
			if err := syscall.Mkfifo(host, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.WriteFile(host, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// corpus is the grub config testdata/corpus/name.
func corpus(t testing.TB, name string) string { return testdataFile(t, "corpus", name) }

// testdataFile is the content of testdata/dir/name.
func testdataFile(t testing.TB, dir, name string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", dir, name))
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// ext2Image builds an ext2 file system image of the folder, without root
// or mounts (mke2fs -d).
func ext2Image(t *testing.T, root string) string {
	t.Helper()
	mke2fs := testenv.Need(t, "mke2fs", "e2fsprogs")
	img := filepath.Join(t.TempDir(), "disk.img")
	out, err := exec.Command(mke2fs, "-q", "-F", "-t", "ext2", "-d", root, img, "8M").CombinedOutput()
	if err != nil {
		t.Fatalf("mke2fs: %v\n%s", err, out)
	}
	return img
}

var usingRe = regexp.MustCompile(`Using <class 'grub\.(\w+)\.(\w+)'> to parse (\S+)`)

var parserOfClass = map[string]Parser{
	"Grub2ConfigFile":    ParserGrub2,
	"GrubConfigFile":     ParserLegacy,
	"ExtLinuxConfigFile": ParserExtlinux,
}

// TestCheckRootMatchesPygrubOnDiskImages puts guest trees on ext2 images
// and holds `check DIR` to what pygrub 4.17 does with the image: which
// config it picks, with which parser, the titles it lists and whether it
// boots (`pygrub -n -q` copies nothing but fails like a real boot would).
func TestCheckRootMatchesPygrubOnDiskImages(t *testing.T) {
	pygrub := needPygrub(t)
	extlinux := "DEFAULT linux\nPROMPT 0\nLABEL rescue\n  KERNEL /boot/vmlinuz-rescue\n  APPEND initrd=/boot/initrd-rescue root=/dev/xvda1\nLABEL linux\n  KERNEL /boot/vmlinuz-lts\n  APPEND root=/dev/xvda1 initrd=/boot/initramfs-lts modules=ext4 quiet\n"
	cases := []struct {
		name  string
		files map[string]string
	}{
		{"el7 boot partition", map[string]string{
			"/grub2/grub.cfg":                       corpus(t, "centos7.cfg"),
			"/vmlinuz-3.10.0-1160.el7.x86_64":       "k",
			"/initramfs-3.10.0-1160.el7.x86_64.img": "i",
		}},
		{"el7 kernel path not on this file system", map[string]string{
			"/boot/grub2/grub.cfg":                       corpus(t, "centos7.cfg"),
			"/boot/vmlinuz-3.10.0-1160.el7.x86_64":       "k",
			"/boot/initramfs-3.10.0-1160.el7.x86_64.img": "i",
		}},
		{"grub-legacy menu.lst", map[string]string{
			"/boot/grub/menu.lst":                  corpus(t, "centos6-menu.lst"),
			"/vmlinuz-2.6.32-754.el6.x86_64":       "k",
			"/initramfs-2.6.32-754.el6.x86_64.img": "i",
		}},
		{"grub2 wins over menu.lst", map[string]string{
			"/boot/grub/menu.lst":                   corpus(t, "centos6-menu.lst"),
			"/grub2/grub.cfg":                       corpus(t, "fedora20-numeric-default.cfg"),
			"/vmlinuz-3.11.7-300.fc20.x86_64":       "k",
			"/initramfs-3.11.7-300.fc20.x86_64.img": "i",
		}},
		{"debian 12 with submenu", map[string]string{
			"/boot/grub/grub.cfg":             corpus(t, "debian12.cfg"),
			"/boot/vmlinuz-6.1.0-13-amd64":    "k",
			"/boot/initrd.img-6.1.0-13-amd64": "i",
		}},
		{"ubuntu default by title", map[string]string{
			"/boot/grub/grub.cfg":                corpus(t, "ubuntu2204-title-default.cfg"),
			"/boot/vmlinuz-5.15.0-91-generic":    "k",
			"/boot/initrd.img-5.15.0-91-generic": "i",
		}},
		{"initrd missing", map[string]string{
			"/boot/grub/grub.cfg":          corpus(t, "debian12.cfg"),
			"/boot/vmlinuz-6.1.0-13-amd64": "k",
		}},
		{"extlinux", map[string]string{
			"/boot/extlinux/extlinux.conf": extlinux,
			"/boot/vmlinuz-lts":            "k",
			"/boot/initramfs-lts":          "i",
		}},
		{"absolute symlink to grub2", map[string]string{
			"/boot/grub/grub.cfg":                   "->/boot/grub2/grub.cfg",
			"/boot/grub2/grub.cfg":                  corpus(t, "fedora20-numeric-default.cfg"),
			"/vmlinuz-3.11.7-300.fc20.x86_64":       "k",
			"/initramfs-3.11.7-300.fc20.x86_64.img": "i",
		}},
		{"no config", map[string]string{"/etc/hostname": "guest\n"}},
		{"parse error", map[string]string{"/boot/grub/grub.cfg": corpus(t, "rhel8-kernelopts.cfg")}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			root := guestTree(t, tc.files)
			rep, err := Check(root, Xen417)
			if err != nil {
				t.Fatal(err)
			}
			img := ext2Image(t, root)
			outDir := t.TempDir()

			list := exec.Command(pygrub, "-l", "-n", "--output-directory", outDir, img)
			var stdout, stderr bytes.Buffer
			list.Stdout, list.Stderr = &stdout, &stderr
			_ = list.Run()
			if m := usingRe.FindStringSubmatch(stderr.String()); m == nil {
				if rep.Config != "" {
					t.Errorf("pygrub found no config, check found %s", rep.Config)
				}
			} else if m[3] != rep.Config || parserOfClass[m[2]] != rep.Parser {
				t.Errorf("pygrub parses %s with %s, check %s with %s", m[3], m[2], rep.Config, rep.Parser)
			}
			var titles []string
			for _, line := range strings.Split(stdout.String(), "\n") {
				if title, ok := strings.CutPrefix(line, "title: "); ok {
					titles = append(titles, title)
				}
			}
			for i, title := range titles {
				if i >= len(rep.Entries) || rep.Entries[i].Title != title {
					t.Errorf("pygrub -l title %d %q, check %+v", i, title, rep.Entries)
				}
			}

			boot := exec.Command(pygrub, "-n", "-q", "--output-directory", outDir, img)
			out, err := boot.CombinedOutput()
			if booted := err == nil; booted != rep.Bootable {
				t.Errorf("pygrub -n -q booted=%v, check bootable=%v problems=%s\npygrub: %s", booted, rep.Bootable, problemText(rep), lastLine(out))
			}
		})
	}
}

func lastLine(b []byte) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return lines[len(lines)-1]
}

// TestCheckRoot41NamesEachFailureWithItsFix walks the failures of Xen 4.1 on an EL7 guest.
func TestCheckRoot41NamesEachFailureWithItsFix(t *testing.T) {
	el7 := map[string]string{
		"/boot/grub2/grub.cfg":                       corpus(t, "centos7.cfg"),
		"/etc/fstab":                                 "/dev/mapper/centos-root /  xfs defaults 0 0\nUUID=9c2d5e4b /boot xfs defaults 0 0\n",
		"/boot/vmlinuz-3.10.0-1160.el7.x86_64":       "k",
		"/boot/initramfs-3.10.0-1160.el7.x86_64.img": "i",
	}
	rep, err := Check(guestTree(t, el7), Xen41)
	if err != nil {
		t.Fatal(err)
	}
	// Once the config is found, linux16 and the greedy titles come next:
	// one read of check lists them all.
	for _, code := range []string{ProblemNoConfig, ProblemGrub2NotSearched, ProblemXFS, ProblemLinux16, ProblemGreedyTitle} {
		if !hasProblem(rep, code) {
			t.Errorf("no %s in\n%s", code, problemText(rep))
		}
	}
	if rep.Bootable {
		t.Error("bootable")
	}
	if cur, _ := Check(guestTree(t, el7), Xen417); !cur.Bootable || cur.Config != "/boot/grub2/grub.cfg" {
		t.Errorf("4.17 on the same guest: %+v", cur)
	}

	// A menu.lst written by the old kickstart snippet, before a kernel update.
	stale := map[string]string{
		"/boot/grub2/grub.cfg":                       corpus(t, "centos7.cfg"),
		"/boot/grub/menu.lst":                        "default=0\ntitle CentOS 7 (old)\n\troot (hd0,0)\n\tkernel /vmlinuz-3.10.0-123.el7.x86_64 ro root=/dev/mapper/centos-root\n\tinitrd /initramfs-3.10.0-123.el7.x86_64.img\n",
		"/etc/fstab":                                 "/dev/mapper/centos-root / xfs defaults 0 0\nUUID=x /boot ext4 defaults 1 2\n",
		"/boot/vmlinuz-3.10.0-1160.el7.x86_64":       "k",
		"/boot/initramfs-3.10.0-1160.el7.x86_64.img": "i",
	}
	rep, _ = Check(guestTree(t, stale), Xen41)
	if rep.Config != "/boot/grub/menu.lst" || !hasProblem(rep, ProblemStaleMenuLst) || !hasProblem(rep, ProblemKernelMissing) || rep.Bootable {
		t.Errorf("stale menu.lst: config %s bootable %v\n%s", rep.Config, rep.Bootable, problemText(rep))
	}
}
