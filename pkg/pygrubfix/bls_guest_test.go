package pygrubfix

import (
	"fmt"
	"strings"
	"testing"
)

// Guest trees laid out as Rocky/Alma 8 and 9 install them.

const (
	el9MachineID = "3f9a1c2e4b5d6e7f8091a2b3c4d5e6f7" // starts with digits, as many do
	el8MachineID = "c0ffee12d4e84e1e9d2c8a7b6f5e4d3c"
	el9Newest    = "5.14.0-362.8.1.el9_3.x86_64"
	el9Saved     = "5.14.0-284.11.1.el9_2.x86_64"
	el8Newest    = "4.18.0-513.5.1.el8_9.x86_64"
	el8Saved     = "4.18.0-477.27.1.el8_8.x86_64"
	el9Options   = "root=/dev/mapper/rl-root ro resume=/dev/mapper/rl-swap rd.lvm.lv=rl/root rd.lvm.lv=rl/swap console=hvc0"
	el8Kernelopt = "root=/dev/mapper/rl-root ro crashkernel=auto resume=/dev/mapper/rl-swap rd.lvm.lv=rl/root rd.lvm.lv=rl/swap console=hvc0"
)

// grubenvBlock is a grubenv file as grub2-editenv writes it: 1024 bytes.
func grubenvBlock(vars ...string) string {
	s := grubenvSignature
	for _, v := range vars {
		s += v + "\n"
	}
	return s + strings.Repeat("#", 1024-len(s))
}

// blsTestdata is testdata/bls/name.
func blsTestdata(t testing.TB, name string) string { return testdataFile(t, "bls", name) }

// el9Tree is Rocky 9 with /boot on a file system of its own: entries with
// literal options, one of them with $tuned_params/$tuned_initrd (set empty
// by grub.cfg's 00_tuned), saved_entry naming the older kernel.
func el9Tree(t testing.TB) map[string]string {
	entry := func(version, title, extraInitrd, extraOptions string) string {
		return fmt.Sprintf("title %s\nversion %s\nlinux /vmlinuz-%s\ninitrd /initramfs-%s.img%s\noptions %s%s\ngrub_users $grub_users\ngrub_arg --unrestricted\ngrub_class rocky\n",
			title, version, version, version, extraInitrd, el9Options, extraOptions)
	}
	files := map[string]string{
		"/etc/fstab":           "/dev/mapper/rl-root /     xfs  defaults 0 0\nUUID=5d6e3c7a-1f2b-4c8d-9e0f-a1b2c3d4e5f6 /boot ext4 defaults 1 2\n/dev/mapper/rl-swap none swap defaults 0 0\n",
		"/etc/machine-id":      el9MachineID + "\n",
		"/etc/os-release":      "NAME=\"Rocky Linux\"\nVERSION=\"9.3 (Blue Onyx)\"\nID=\"rocky\"\n",
		"/boot/grub2/grub.cfg": blsTestdata(t, "rocky9-grub.cfg"),
		"/boot/grub2/grubenv":  grubenvBlock("saved_entry="+el9MachineID+"-"+el9Saved, "menu_auto_hide=1", "boot_success=0", "boot_indeterminate=0"),
		"/boot/loader/entries/" + el9MachineID + "-" + el9Newest + ".conf": entry(el9Newest, "Rocky Linux ("+el9Newest+") 9.3 (Blue Onyx)", "", ""),
		"/boot/loader/entries/" + el9MachineID + "-" + el9Saved + ".conf":  entry(el9Saved, "Rocky Linux ("+el9Saved+") 9.2 (Blue Onyx)", " $tuned_initrd", " $tuned_params"),
		"/boot/loader/entries/" + el9MachineID + "-0-rescue.conf":          "title Rocky Linux (0-rescue-" + el9MachineID + ") 9.3 (Blue Onyx)\nversion 0-rescue-" + el9MachineID + "\nlinux /vmlinuz-0-rescue-" + el9MachineID + "\ninitrd /initramfs-0-rescue-" + el9MachineID + ".img\noptions " + el9Options + "\ngrub_users $grub_users\ngrub_arg --unrestricted\ngrub_class kernel\n",
		"/etc/kernel/install.d/.keep":                                      "",
	}
	for _, v := range []string{el9Newest, el9Saved, "0-rescue-" + el9MachineID} {
		// Paths on the /boot file system, as pygrub names them.
		files["/boot/vmlinuz-"+v] = "file /vmlinuz-" + v
		files["/boot/initramfs-"+v+".img"] = "file /initramfs-" + v + ".img"
	}
	return files
}

// el8Tree is Rocky 8 with /boot on the root file system: entries with
// `options $kernelopts $tuned_params` and `$tuned_initrd` (neither tuned
// variable set anywhere), kernelopts in grubenv, saved_entry naming the
// older kernel.
func el8Tree(t testing.TB) map[string]string {
	entry := func(version, title string) string {
		return fmt.Sprintf("title %s\nversion %s\nlinux /boot/vmlinuz-%s\ninitrd /boot/initramfs-%s.img $tuned_initrd\noptions $kernelopts $tuned_params\nid rocky-20231120093000-%s\ngrub_users $grub_users\ngrub_arg --unrestricted\ngrub_class kernel\n",
			title, version, version, version, version)
	}
	files := map[string]string{
		"/etc/fstab":           "/dev/mapper/rl-root / ext4 defaults 1 1\n/dev/mapper/rl-swap none swap defaults 0 0\n",
		"/etc/machine-id":      el8MachineID + "\n",
		"/boot/grub2/grub.cfg": blsTestdata(t, "rocky8-grub.cfg"),
		"/boot/grub2/grubenv":  grubenvBlock("saved_entry="+el8MachineID+"-"+el8Saved, "kernelopts="+el8Kernelopt, "boot_success=0"),
		"/boot/loader/entries/" + el8MachineID + "-" + el8Newest + ".conf": entry(el8Newest, "Rocky Linux ("+el8Newest+") 8.9 (Green Obsidian)"),
		"/boot/loader/entries/" + el8MachineID + "-" + el8Saved + ".conf":  entry(el8Saved, "Rocky Linux ("+el8Saved+") 8.8 (Green Obsidian)"),
		"/etc/kernel/install.d/.keep":                                      "",
	}
	for _, v := range []string{el8Newest, el8Saved} {
		files["/boot/vmlinuz-"+v] = "file /boot/vmlinuz-" + v
		files["/boot/initramfs-"+v+".img"] = "file /boot/initramfs-" + v + ".img"
	}
	return files
}

// blsGuest is a test guest: its tree, the folder pygrub's disk image is
// made of (the /boot file system when it is separate) and the boot grub
// must make: kernel, initrd and args as pygrub hands them over.
type blsGuest struct {
	name                 string
	files                func(testing.TB) map[string]string
	bootFS               string
	kernel, initrd, args string
}

var blsGuests = []blsGuest{
	{"rocky9 separate boot", el9Tree, "/boot", "/vmlinuz-" + el9Saved, "/initramfs-" + el9Saved + ".img", el9Options},
	{"rocky8 boot on root", el8Tree, "/", "/boot/vmlinuz-" + el8Saved, "/boot/initramfs-" + el8Saved + ".img", el8Kernelopt},
}
