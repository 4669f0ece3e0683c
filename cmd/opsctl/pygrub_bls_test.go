package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/opsctl/opsctl/internal/testenv"
)

const (
	blsMachineID = "3f9a1c2e4b5d6e7f8091a2b3c4d5e6f7"
	blsNewest    = "5.14.0-362.8.1.el9_3.x86_64"
	blsSaved     = "5.14.0-284.11.1.el9_2.x86_64"
	blsOptions   = "root=/dev/mapper/rl-root ro console=hvc0"
)

// pygrubBLSTree writes a Rocky 9 guest (its own /boot file system, ext4)
// whose grubenv saved_entry names the older of two kernels, under a new
// folder. grubCfg is its /boot/grub2/grub.cfg.
func pygrubBLSTree(t *testing.T, grubCfg string) string {
	t.Helper()
	root := t.TempDir()
	entry := func(v string) string {
		return fmt.Sprintf("title Rocky Linux (%s) 9\nversion %s\nlinux /vmlinuz-%s\ninitrd /initramfs-%s.img $tuned_initrd\noptions %s $tuned_params\ngrub_class rocky\n", v, v, v, v, blsOptions)
	}
	env := "# GRUB Environment Block\nsaved_entry=" + blsMachineID + "-" + blsSaved + "\n"
	files := map[string]string{
		"/etc/fstab":           "/dev/mapper/rl-root / xfs defaults 0 0\nUUID=5d6e /boot ext4 defaults 1 2\n",
		"/boot/grub2/grub.cfg": grubCfg,
		"/boot/grub2/grubenv":  env + strings.Repeat("#", 1024-len(env)),
		"/boot/loader/entries/" + blsMachineID + "-" + blsNewest + ".conf": entry(blsNewest),
		"/boot/loader/entries/" + blsMachineID + "-" + blsSaved + ".conf":  entry(blsSaved),
		"/etc/kernel/install.d/README":                                     "",
	}
	for _, v := range []string{blsNewest, blsSaved} {
		files["/boot/vmlinuz-"+v] = "k"
		files["/boot/initramfs-"+v+".img"] = "i"
	}
	pygrubWriteTree(t, root, files)
	return root
}

// A Fedora-style grub.cfg that pygrub parses without error: no
// kernelopts fallback, no menuentry.
const pygrubBLSPlainCfg = "load_env\nset default=\"${saved_entry}\"\nset timeout=5\ninsmod blscfg\nblscfg\n"

// TestPygrubCheckBLSGuestJSON: check on a BLS guest (and on its grub.cfg
// alone) prints entries as [] (it printed null when pygrub parsed the
// config and found no menuentry), exits 1 and names the entries and the
// command that fixes them.
func TestPygrubCheckBLSGuestJSON(t *testing.T) {
	root := pygrubBLSTree(t, pygrubBLSPlainCfg)
	for _, target := range []string{root, filepath.Join(root, "boot/grub2/grub.cfg")} {
		for _, xen := range []string{"4.17", "4.1"} {
			out, stderr, code := testenv.Run(t, "", "pygrub", "check", "--xen", xen, target, "-o", "json")
			var rep struct {
				Entries  json.RawMessage
				Problems []struct{ Code, Message string }
			}
			if err := json.Unmarshal([]byte(out), &rep); err != nil {
				t.Fatal(err)
			}
			if code != 1 || string(rep.Entries) != "[]" {
				t.Errorf("check --xen %s %s: exit %d %s, entries %s", xen, target, code, stderr, rep.Entries)
			}
			found := false
			for _, p := range rep.Problems {
				if p.Code == "bls-entries" && strings.Contains(p.Message, "opsctl pygrub menulst --root") && strings.Contains(p.Message, "--install") {
					found = true
					if target == root && !strings.Contains(p.Message, blsMachineID+"-"+blsSaved+".conf") {
						t.Errorf("the problem does not name the entries: %s", p.Message)
					}
				}
			}
			if !found {
				t.Errorf("check --xen %s %s: no bls-entries problem with the fix: %s", xen, target, out)
			}
		}
	}
}

// TestPygrubMenuLstInstallCommand walks a user through the fix of a BLS
// guest: menulst prints the BLS menu, --install --dry-run shows each file
// and writes nothing, --install makes check say bootable for 4.17 and
// 4.1, --install-hook adds the plugin 0755 root:root.
func TestPygrubMenuLstInstallCommand(t *testing.T) {
	root := pygrubBLSTree(t, pygrubBLSPlainCfg)
	out, stderr, code := testenv.Run(t, "", "pygrub", "menulst", "--root", root)
	if code != 0 || !strings.Contains(out, "default=1\n") || !strings.Contains(out, "kernel /vmlinuz-"+blsSaved+" "+blsOptions+"\n") {
		t.Errorf("menulst --root on a BLS guest: exit %d %s\n%s", code, stderr, out)
	}

	out, stderr, code = testenv.Run(t, "", "pygrub", "menulst", "--root", root, "--install", "--dry-run")
	grubCfg, menuLst := filepath.Join(root, "boot/grub/grub.cfg"), filepath.Join(root, "boot/grub/menu.lst")
	if code != 0 || !strings.Contains(out, "# would write "+grubCfg+" (/boot/grub/grub.cfg in the guest, for pygrub 4.17), mode 0644, creating the folder /boot/grub:\n") ||
		!strings.Contains(out, "# would write "+menuLst) || !strings.Contains(out, "menuentry 'Rocky Linux ("+blsSaved+") 9' {\n\tlinux /vmlinuz-"+blsSaved+" "+blsOptions+"\n") {
		t.Errorf("--install --dry-run: exit %d %s\n%s", code, stderr, out)
	}
	if _, err := os.Stat(filepath.Join(root, "boot/grub")); !os.IsNotExist(err) {
		t.Fatalf("--dry-run wrote: %v", err)
	}

	_, stderr, code = testenv.Run(t, "", "pygrub", "menulst", "--root", root, "--install")
	if code != 0 || !strings.Contains(stderr, "wrote "+grubCfg+" for pygrub 4.17") || !strings.Contains(stderr, "2 entries, default 1") {
		t.Fatalf("--install: exit %d %s", code, stderr)
	}
	for _, xen := range []string{"4.17", "4.1"} {
		out, _, code := testenv.Run(t, "", "pygrub", "check", "--xen", xen, root)
		if code != 0 || !strings.Contains(out, "bootable: yes (entry 1)") || !strings.Contains(out, "kernel /vmlinuz-"+blsSaved) {
			t.Errorf("check --xen %s after --install: exit %d\n%s", xen, code, out)
		}
	}

	_, stderr, code = testenv.Run(t, "", "pygrub", "menulst", "--root", root, "--install-hook")
	plugin := filepath.Join(root, "etc/kernel/install.d/99-opsctl-pygrub-menulst.install")
	st, err := os.Stat(plugin)
	if code != 0 || err != nil || st.Mode() != 0o755 || st.Sys().(*syscall.Stat_t).Uid != 0 || !strings.Contains(stderr, "for kernel-install") {
		t.Errorf("--install-hook: exit %d %s; plugin %v %v", code, stderr, st, err)
	}
	if backups, _ := filepath.Glob(filepath.Join(root, "boot/grub/*.orig*")); len(backups) != 0 {
		t.Errorf("opsctl's own files backed up: %v", backups)
	}

	// An EL7 guest: --install writes menu.lst only; there is no plugin to
	// install (kernels come through new-kernel-pkg).
	el7 := pygrubGrub2Guest(t, "centos7.cfg")
	out, stderr, code = testenv.Run(t, "", "pygrub", "menulst", "--root", el7, "--install", "--dry-run")
	if code != 0 || strings.Count(out, "# would write ") != 1 || !strings.Contains(out, "/boot/grub/menu.lst in the guest, for pygrub 4.1") {
		t.Errorf("EL7 --install --dry-run: exit %d %s\n%s", code, stderr, out)
	}
	if _, stderr, code = testenv.Run(t, "", "pygrub", "menulst", "--root", el7, "--install-hook"); code != 1 || !strings.Contains(stderr, "--kickstart") {
		t.Errorf("EL7 --install-hook: exit %d %s", code, stderr)
	}

	for _, args := range [][]string{
		{"pygrub", "menulst", "--install"},
		{"pygrub", "menulst", "--root", root, "--install", "-w", menuLst},
		{"pygrub", "menulst", "--root", root, "--install", "--kickstart"},
		{"pygrub", "menulst", "--root", filepath.Join(root, "missing"), "--install"},
		{"pygrub", "menulst", "--root", grubCfg, "--install"},
	} {
		if _, stderr, code := testenv.Run(t, "", args...); code != 2 {
			t.Errorf("%v: exit %d %s", args, code, stderr)
		}
	}
}

func TestPygrubMenuLstInstallFlags(t *testing.T) {
	got, err := pygrubParseFlags(t, NewCmdPygrubMenuLst, "--root", "/mnt", "--install", "--install-hook", "--dry-run")
	if err != nil || got.Root != "/mnt" || !got.Install || !got.InstallHook || !got.DryRun {
		t.Errorf("%+v %v", got, err)
	}
}
