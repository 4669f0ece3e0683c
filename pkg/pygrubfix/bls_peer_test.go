package pygrubfix

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// pygrubBoot is what `pygrub -q IMAGE` boots: the kernel and initrd it
// copied out of the image (their content: the test trees write each
// file's guest path into it) and the arguments.
type pygrubBoot struct {
	ok                   bool
	kernel, initrd, args string
	out                  string
}

var sxpRe = regexp.MustCompile(`^linux \(kernel ([^)]*)\)(?:\(ramdisk ([^)]*)\))?(?:\(args '([^']*)'\))?`)

func pygrubBootImage(t *testing.T, pygrub, img string) pygrubBoot {
	t.Helper()
	cmd := exec.Command(pygrub, "-q", "--output-directory", t.TempDir(), img)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	b := pygrubBoot{ok: err == nil, out: stdout.String() + stderr.String()}
	if err != nil {
		return b
	}
	m := sxpRe.FindStringSubmatch(stdout.String())
	if m == nil {
		t.Fatalf("pygrub output not understood: %q", stdout.String())
	}
	read := func(p string) string {
		if p == "" {
			return ""
		}
		data, err := os.ReadFile(strings.Trim(p, "'"))
		if err != nil {
			t.Fatal(err)
		}
		return string(data)
	}
	b.kernel, b.initrd, b.args = read(m[1]), read(m[2]), m[3]
	return b
}

// TestBLSGuestsBootUnderPygrubAfterInstall holds the fix to the real
// pygrub 4.17 on ext2 images of Rocky 8 and 9 guest trees: before it,
// pygrub boots nothing and check says why (with the fix) for 4.17 and
// 4.1; after `menulst --install`, pygrub boots exactly the kernel, initrd
// and options of saved_entry's entry (not the newest), check says
// bootable for both releases, and the guest's own grub.cfg and entries
// are untouched.
func TestBLSGuestsBootUnderPygrubAfterInstall(t *testing.T) {
	pygrub := needPygrub(t)
	for _, guest := range blsGuests {
		t.Run(guest.name, func(t *testing.T) {
			files := guest.files(t)
			root := guestTree(t, files)
			image := func() string { return ext2Image(t, filepath.Join(root, guest.bootFS)) }

			before := pygrubBootImage(t, pygrub, image())
			if before.ok {
				t.Fatalf("pygrub boots the guest before the fix: %+v", before)
			}
			t.Logf("before, pygrub 4.17: %s", lastLine([]byte(before.out)))
			for _, rel := range []*Release{Xen417, Xen41} {
				rep, err := Check(root, rel)
				if err != nil {
					t.Fatal(err)
				}
				if rep.Bootable || len(rep.Entries) != 0 || !hasProblem(rep, ProblemBLS) {
					t.Errorf("%s before: bootable %v entries %d\n%s", rel.Name, rep.Bootable, len(rep.Entries), problemText(rep))
				}
				msg := problemMessage(rep, ProblemBLS)
				for _, want := range []string{"opsctl pygrub menulst --root " + root + " --install", guest.kernel[strings.LastIndex(guest.kernel, "/")+1:], "/loader/entries"} {
					if !strings.Contains(msg, want) {
						t.Errorf("%s: bls problem lacks %q: %s", rel.Name, want, msg)
					}
				}
				t.Logf("before, check --xen %s: %s", rel.Name, problemText(rep))
			}

			plan, err := PlanInstall(root, false)
			if err != nil {
				t.Fatal(err)
			}
			if len(plan.Files) != 2 || plan.Files[0].Path != Grub2File || plan.Files[1].Path != MenuLstFile || plan.Files[0].CreateFolder != installFolder {
				t.Fatalf("plan: %+v", plan.Files)
			}
			if _, err := os.Stat(filepath.Join(root, "boot/grub")); !os.IsNotExist(err) {
				t.Fatalf("planning wrote: %v", err)
			}
			if err := plan.Apply(); err != nil {
				t.Fatal(err)
			}
			plan.Close()
			for p, content := range files {
				if data, err := os.ReadFile(filepath.Join(root, p)); err != nil || string(data) != content {
					t.Errorf("the guest's %s changed: %v", p, err)
				}
			}
			for _, f := range []string{"boot/grub", "boot/grub/grub.cfg", "boot/grub/menu.lst"} {
				st, err := os.Stat(filepath.Join(root, f))
				if err != nil {
					t.Fatal(err)
				}
				want := os.FileMode(0o644)
				if st.IsDir() {
					want = 0o755 | os.ModeDir
				}
				if st.Mode() != want {
					t.Errorf("%s: mode %v, want %v", f, st.Mode(), want)
				}
			}

			after := pygrubBootImage(t, pygrub, image())
			if !after.ok || after.kernel != "file "+guest.kernel || after.initrd != "file "+guest.initrd || after.args != guest.args {
				t.Errorf("pygrub 4.17 after the fix boots %+v\nwant kernel %s initrd %s args %q", after, guest.kernel, guest.initrd, guest.args)
			}
			t.Logf("after, pygrub 4.17 copied %q and %q, args %q", after.kernel, after.initrd, after.args)
			for _, rel := range []*Release{Xen417, Xen41} {
				rep, err := Check(root, rel)
				if err != nil {
					t.Fatal(err)
				}
				if !rep.Bootable || len(rep.Problems) != 0 {
					t.Errorf("%s after: bootable %v config %s\n%s", rel.Name, rep.Bootable, rep.Config, problemText(rep))
					continue
				}
				e := rep.Entries[rep.Default]
				if e.Kernel != guest.kernel || e.Initrd != guest.initrd || e.Args != guest.args {
					t.Errorf("%s after boots %+v", rel.Name, e)
				}
				t.Logf("after, check --xen %s: %s entry %d %s", rel.Name, rep.Config, rep.Default, e.Kernel)
			}
			// pygrub 4.1 reads menu.lst first: on this image without the
			// grub.cfg written for 4.17, pygrub falls to the grub-legacy
			// reader, which boots the same.
			os.Rename(filepath.Join(root, Grub2File), filepath.Join(root, "boot/grub/grub.cfg.away"))
			os.Rename(filepath.Join(root, "boot/grub2"), filepath.Join(root, "boot/grub2.away"))
			legacy := pygrubBootImage(t, pygrub, image())
			if !legacy.ok || legacy.kernel != "file "+guest.kernel || legacy.initrd != "file "+guest.initrd || legacy.args != guest.args || !strings.Contains(legacy.out, "GrubConfigFile") {
				t.Errorf("pygrub on menu.lst boots %+v", legacy)
			}
		})
	}
}

func problemMessage(r *Report, code string) string {
	for _, p := range r.Problems {
		if p.Code == code {
			return p.Message
		}
	}
	return ""
}
