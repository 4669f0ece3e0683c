package pygrubfix

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/opsctl/opsctl/internal/testenv"
)

// awks are the awk programs the plugin is run with: mawk (Debian's awk),
// gawk (EL's) and busybox's.
func awks(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{
		"mawk": testenv.Need(t, "mawk", "mawk"),
		"gawk": testenv.Need(t, "gawk", "gawk"),
	}
	out["busybox"] = testenv.Need(t, "busybox", "busybox-static") + " awk"
	return out
}

// runPlugin runs the plugin as kernel-install does, against the guest
// tree root.
func runPlugin(t *testing.T, root, awk string, args ...string) (string, error) {
	t.Helper()
	plugin := filepath.Join(t.TempDir(), "99-opsctl-pygrub-menulst.install")
	if err := os.WriteFile(plugin, []byte(PluginScript()), 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(plugin, args...)
	cmd.Env = append(os.Environ(), "OPSCTL_MENULST_ROOT="+root, "OPSCTL_PYGRUB_AWK="+awk)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestPluginWritesWhatInstallWrites runs the plugin, with each awk, on the
// guest trees and on variants of them (saved_entry by title, by number,
// unset, naming a removed kernel; kernelopts from grub.cfg's fallback;
// tuned variables set) and wants exactly the files `menulst --install`
// writes: the plugin is an independent reading of blscfg's rules in awk.
func TestPluginWritesWhatInstallWrites(t *testing.T) {
	variants := map[string]func(map[string]string){
		"as installed": func(map[string]string) {},
		"saved_entry by title": func(f map[string]string) {
			f["/boot/grub2/grubenv"] = grubenvBlock("saved_entry=Rocky Linux (" + el8Newest + ") 8.9 (Green Obsidian)")
		},
		"saved_entry a number": func(f map[string]string) { f["/boot/grub2/grubenv"] = grubenvBlock("saved_entry=1") },
		"saved_entry out of range": func(f map[string]string) {
			f["/boot/grub2/grubenv"] = grubenvBlock("saved_entry=7", "kernelopts=root=/dev/xvda1 ro")
		},
		"saved_entry unset, no grubenv": func(f map[string]string) { delete(f, "/boot/grub2/grubenv") },
		"saved_entry of a removed kernel": func(f map[string]string) {
			f["/boot/grub2/grubenv"] = grubenvBlock("saved_entry=" + el9MachineID + "-5.14.0-70.13.1.el9_0.x86_64")
		},
		"tuned variables set": func(f map[string]string) {
			f["/boot/grub2/grubenv"] = grubenvBlock("saved_entry="+el8MachineID+"-"+el8Saved, "kernelopts=root=/dev/xvda1 ro", "tuned_params=skew_tick=1 isolcpus=1", "tuned_initrd=")
		},
		"grubenv escapes": func(f map[string]string) {
			f["/boot/grub2/grubenv"] = grubenvSignature + "kernelopts=root=/dev/xvda1 a\\\\b c\\\nd\nsaved_entry=" + el8MachineID + "-" + el8Saved + "\n"
		},
		"grubenv without its last newline": func(f map[string]string) {
			f["/boot/grub2/grubenv"] = grubenvSignature + "kernelopts=root=/dev/xvda1\nsaved_entry=" + el8MachineID + "-" + el8Saved
		},
		"entries out of the usual order and odd lines": func(f map[string]string) {
			f["/boot/loader/entries/"+el8MachineID+"-4.18.0-80.el8.x86_64.conf"] = "# comment\n  title   Old one \t\nlinux\t/boot/vmlinuz-4.18.0-80.el8.x86_64\r\noptions $kernelopts x\ninitrd /boot/initramfs-4.18.0-80.el8.x86_64.img\n\ntitle not read after the empty line\n"
			f["/boot/loader/entries/"+el8MachineID+"-4.18.0-80.el8.x86_64+debug.conf"] = "title Debug's \"kernel\" here\nlinux /boot/vmlinuz-4.18.0-80.el8.x86_64+debug\noptions $kernelopts $a $ b\n"
			f["/boot/loader/entries/.hidden.conf"] = "title hidden\nlinux /boot/x\n"
			f["/boot/loader/entries/notes.txt"] = "title not an entry\nlinux /boot/x\n"
			f["/boot/loader/entries/uki.conf"] = "title efi\nefi /EFI/Linux/x.efi\n"
		},
	}
	for _, guest := range blsGuests {
		for name, change := range variants {
			files := guest.files(t)
			change(files)
			root := guestTree(t, files)
			plan, err := PlanInstall(root, false)
			if err != nil {
				t.Fatalf("%s, %s: %v", guest.name, name, err)
			}
			want := map[string]string{}
			for _, f := range plan.Files {
				want[f.Path] = f.Text
			}
			plan.Close()
			for awkName, awk := range awks(t) {
				t.Run(guest.name+"/"+name+"/"+awkName, func(t *testing.T) {
					tree := guestTree(t, files)
					if out, err := runPlugin(t, tree, awk, "add", "4.18.0-999.el8.x86_64", "/boot/x", "/boot/vmlinuz"); err != nil {
						t.Fatalf("plugin: %v\n%s", err, out)
					}
					for p, text := range want {
						got, err := os.ReadFile(filepath.Join(tree, p))
						if err != nil || string(got) != text {
							t.Errorf("%s: %v\nplugin:\n%s\nopsctl:\n%s", p, err, got, text)
						}
					}
					if left, _ := filepath.Glob(filepath.Join(tree, "boot/grub/.*")); len(left) > 0 {
						t.Errorf("temporary files left: %v", left)
					}
				})
			}
		}
	}
}

// TestPluginIsCarefulAsRoot: the plugin refuses a /boot/grub or a target
// that is a symlink (it would write through it, as root, at every kernel
// update) and keeps a menu.lst it did not write.
func TestPluginIsCarefulAsRoot(t *testing.T) {
	awk := testenv.Need(t, "mawk", "mawk")
	files := el9Tree(t)
	outside := t.TempDir()
	victim := filepath.Join(outside, "shadow")
	os.WriteFile(victim, []byte("root:x:0:0\n"), 0o600)

	root := guestTree(t, files)
	os.Mkdir(filepath.Join(root, "boot/grub"), 0o755)
	os.Symlink(victim, filepath.Join(root, "boot/grub/menu.lst"))
	if out, err := runPlugin(t, root, awk, "add", el9Newest, "/x"); err == nil || !strings.Contains(out, "not a regular file") {
		t.Errorf("symlinked menu.lst: %v %s", err, out)
	}
	root = guestTree(t, files)
	os.Symlink(outside, filepath.Join(root, "boot/grub"))
	if out, err := runPlugin(t, root, awk, "add", el9Newest, "/x"); err == nil || !strings.Contains(out, "not a folder") {
		t.Errorf("symlinked /boot/grub: %v %s", err, out)
	}
	outsideUntouched(t, outside, victim, "root:x:0:0\n")

	root = guestTree(t, files)
	os.Mkdir(filepath.Join(root, "boot/grub"), 0o755)
	os.WriteFile(filepath.Join(root, "boot/grub/menu.lst"), []byte("# hand-written\ndefault 0\n"), 0o644)
	os.WriteFile(filepath.Join(root, "boot/grub/menu.lst.orig"), []byte("older backup\n"), 0o644)
	if out, err := runPlugin(t, root, awk, "add", el9Newest, "/x"); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	if data, _ := os.ReadFile(filepath.Join(root, "boot/grub/menu.lst.orig.1")); string(data) != "# hand-written\ndefault 0\n" {
		t.Errorf("hand-written menu.lst not kept as .orig.1: %q", data)
	}
	if data, _ := os.ReadFile(filepath.Join(root, "boot/grub/menu.lst.orig")); string(data) != "older backup\n" {
		t.Errorf("older backup overwritten: %q", data)
	}
	// Its own files are rewritten without a backup.
	if out, err := runPlugin(t, root, awk, "add", el9Newest, "/x"); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	if backups, _ := filepath.Glob(filepath.Join(root, "boot/grub/*.orig*")); len(backups) != 2 {
		t.Errorf("backups after a second run: %v", backups)
	}
}

// fake20Grub plays the part of EL9's /usr/lib/kernel/install.d/20-grub.install
// in the guest tree: on add it copies the kernel in, writes an initramfs
// (dracut's part) and the entry, and with UPDATEDEFAULT=yes points
// saved_entry at it (grub2-editenv); on remove it deletes them.
const fake20Grub = `#!/bin/sh
set -eu
R="$OPSCTL_MENULST_ROOT"
v="$2"
id="$KERNEL_INSTALL_MACHINE_ID-$v"
case "$1" in
add)
  cp "$4" "$R/boot/vmlinuz-$v"
  printf 'file /initramfs-%s.img' "$v" > "$R/boot/initramfs-$v.img"
  printf 'title Rocky Linux (%s) 9.4 (Blue Onyx)\nversion %s\nlinux /vmlinuz-%s\ninitrd /initramfs-%s.img $tuned_initrd\noptions %s $tuned_params\ngrub_users $grub_users\ngrub_arg --unrestricted\ngrub_class rocky\n' "$v" "$v" "$v" "$v" "$OPTIONS" > "$R/boot/loader/entries/$id.conf"
  if [ "${UPDATEDEFAULT:-no}" = yes ]; then
    printf '# GRUB Environment Block\nsaved_entry=%s\n' "$id" > "$R/boot/grub2/grubenv"
  fi
  ;;
remove)
  rm -f "$R/boot/loader/entries/$id.conf" "$R/boot/vmlinuz-$v" "$R/boot/initramfs-$v.img"
  ;;
esac
`

// TestKernelInstallKeepsPygrubBooting installs the plugin with
// --install-hook into a Rocky 9 tree and drives Debian's real
// kernel-install (systemd 252) at the tree: a kernel update that keeps
// saved_entry (UPDATEDEFAULT=no), one that moves it to the new kernel,
// and the removal of the kernel saved_entry names. After each, the real
// pygrub 4.17 boots what grub would, and check finds nothing stale.
func TestKernelInstallKeepsPygrubBooting(t *testing.T) {
	pygrub := needPygrub(t)
	kernelInstall := testenv.Need(t, "kernel-install", "systemd")
	testenv.NeedRoot(t)
	root := guestTree(t, el9Tree(t))
	plan, err := PlanInstall(root, true)
	if err != nil {
		t.Fatal(err)
	}
	if err := plan.Apply(); err != nil {
		t.Fatal(err)
	}
	plan.Close()
	plugin := filepath.Join(root, PluginPath)
	st, err := os.Stat(plugin)
	if err != nil {
		t.Fatal(err)
	}
	if sys := st.Sys().(*syscall.Stat_t); st.Mode() != 0o755 || sys.Uid != 0 || sys.Gid != 0 {
		t.Errorf("plugin mode %v owner %d:%d", st.Mode(), sys.Uid, sys.Gid)
	}
	fake := filepath.Join(t.TempDir(), "20-grub.install")
	os.WriteFile(fake, []byte(fake20Grub), 0o755)
	image := filepath.Join(t.TempDir(), "vmlinuz")

	run := func(updateDefault string, args ...string) {
		t.Helper()
		cmd := exec.Command(kernelInstall, append([]string{"--verbose"}, args...)...)
		cmd.Env = append(os.Environ(),
			"KERNEL_INSTALL_PLUGINS="+fake+" "+plugin,
			"KERNEL_INSTALL_CONF_ROOT="+filepath.Join(root, "etc/kernel"),
			"BOOT_ROOT="+filepath.Join(root, "boot"),
			"MACHINE_ID="+el9MachineID,
			"OPSCTL_MENULST_ROOT="+root,
			"OPTIONS="+el9Options,
			"UPDATEDEFAULT="+updateDefault)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("kernel-install %v: %v\n%s", args, err, out)
		}
		if !strings.Contains(string(out), plugin+" "+args[0]+" "+args[1]) {
			t.Fatalf("kernel-install did not run the plugin:\n%s", out)
		}
	}
	boots := func(version string) {
		t.Helper()
		b := pygrubBootImage(t, pygrub, ext2Image(t, filepath.Join(root, "boot")))
		if !b.ok || b.kernel != "file /vmlinuz-"+version || b.initrd != "file /initramfs-"+version+".img" || b.args != el9Options {
			t.Errorf("pygrub boots %+v, want %s", b, version)
		}
		for _, rel := range []*Release{Xen417, Xen41} {
			rep, err := Check(root, rel)
			if err != nil || !rep.Bootable || len(rep.Problems) > 0 {
				t.Errorf("check %s: %v %+v\n%s", rel.Name, err, rep, problemText(rep))
			}
		}
	}
	boots(el9Saved)

	const v94 = "5.14.0-427.13.1.el9_4.x86_64"
	os.WriteFile(image, []byte("file /vmlinuz-"+v94), 0o644)
	run("no", "add", v94, image)
	boots(el9Saved) // saved_entry still names 9.2's kernel

	const v95 = "5.14.0-503.14.1.el9_5.x86_64"
	os.WriteFile(image, []byte("file /vmlinuz-"+v95), 0o644)
	run("yes", "add", v95, image)
	boots(v95)

	// Removing the kernel saved_entry names: grub falls back to the
	// first entry, the newest.
	run("no", "remove", v95)
	boots(v94)
	if data, _ := os.ReadFile(filepath.Join(root, "boot/grub/grub.cfg")); strings.Contains(string(data), v95) {
		t.Errorf("removed kernel still in grub.cfg:\n%s", data)
	}
}

// TestKickstartPostOnBLSGuests runs the --kickstart %post section on
// Rocky 8 and 9 trees (as anaconda leaves them, no /boot/grub): it writes
// what `menulst --install` writes, and installs the plugin.
func TestKickstartPostOnBLSGuests(t *testing.T) {
	sh := testenv.Need(t, "sh", "dash")
	for _, guest := range blsGuests {
		t.Run(guest.name, func(t *testing.T) {
			files := guest.files(t)
			plan, err := PlanInstall(guestTree(t, files), false)
			if err != nil {
				t.Fatal(err)
			}
			plan.Close()
			root := guestTree(t, files)
			post := KickstartPost(root)
			_, body, _ := strings.Cut(post, "\n")
			cmd := exec.Command(sh, "-c", strings.TrimSuffix(body, "%end\n"))
			cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			for _, f := range plan.Files {
				if got, err := os.ReadFile(filepath.Join(root, f.Path)); err != nil || string(got) != f.Text {
					t.Errorf("%s: %v\n%s\nwant\n%s", f.Path, err, got, f.Text)
				}
			}
			if got, err := os.ReadFile(filepath.Join(root, PluginPath)); err != nil || string(got) != PluginScript() {
				t.Errorf("plugin not installed: %v", err)
			}
		})
	}
}
