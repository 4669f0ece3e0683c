package pygrubfix

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opsctl/opsctl/internal/testenv"
)

func TestMenuLstFromEL7RootBootsOnOldAndNewPygrub(t *testing.T) {
	pygrub := needPygrub(t)
	bootFS := map[string]string{
		"/grub2/grub.cfg":                                          corpus(t, "centos7.cfg"),
		"/grub2/grubenv":                                           "# GRUB Environment Block\nsaved_entry=CentOS Linux (0-rescue-8f2c1b7d5e4a4c3b9a6d0e1f2a3b4c5d) 7 (Core)\n######\n",
		"/vmlinuz-3.10.0-1160.el7.x86_64":                          "k",
		"/initramfs-3.10.0-1160.el7.x86_64.img":                    "i",
		"/vmlinuz-0-rescue-8f2c1b7d5e4a4c3b9a6d0e1f2a3b4c5d":       "k",
		"/initramfs-0-rescue-8f2c1b7d5e4a4c3b9a6d0e1f2a3b4c5d.img": "i",
	}
	root := guestTree(t, bootFS)
	m, err := MenuLstFromRoot(root)
	if err != nil {
		t.Fatal(err)
	}
	text, err := m.Text()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"default=1\n", "title CentOS Linux (3.10.0-1160.el7.x86_64) 7 (Core)\n\troot (hd0,0)\n\tkernel /vmlinuz-3.10.0-1160.el7.x86_64 root=/dev/mapper/centos-root ro crashkernel=auto", "\tinitrd /initramfs-3.10.0-1160.el7.x86_64.img\n"} {
		if !strings.Contains(text, want) {
			t.Errorf("menu.lst lacks %q:\n%s", want, text)
		}
	}
	if err := os.Mkdir(filepath.Join(root, "grub"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeMenuLst(t, root, filepath.Join(root, "grub/menu.lst"), text)
	old, err := Check(root, Xen41)
	if err != nil {
		t.Fatal(err)
	}
	if !old.Bootable || old.Config != "/grub/menu.lst" || old.Entries[old.Default].Kernel != "/vmlinuz-0-rescue-8f2c1b7d5e4a4c3b9a6d0e1f2a3b4c5d" {
		t.Errorf("4.1 on the guest with menu.lst: %+v\n%s", old, problemText(old))
	}
	// pygrub 4.17 still prefers grub.cfg; without it, it boots menu.lst.
	os.RemoveAll(filepath.Join(root, "grub2"))
	out, err := exec.Command(pygrub, "-n", "-q", "--output-directory", t.TempDir(), ext2Image(t, root)).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Using <class 'grub.GrubConf.GrubConfigFile'> to parse /grub/menu.lst") {
		t.Errorf("pygrub on the menu.lst image: %v\n%s", err, out)
	}
}

// With GRUB_DEFAULT=0 (or any fixed value) grub2-mkconfig writes
// set default="0" and grub2 never reads saved_entry, which grubenv still
// holds from the installer or an old grub2-set-default: menu.lst must boot
// what grub2 boots, not the entry grubenv names.
func TestMenuLstIgnoresGrubenvWhenTheConfigHasAFixedDefault(t *testing.T) {
	cfg := corpus(t, "centos7.cfg")
	fixed := strings.Replace(cfg, `set default="${saved_entry}"`, `set default="0"`, 1)
	if fixed == cfg {
		t.Fatal(`centos7.cfg has no set default="${saved_entry}" line`)
	}
	grubenv := "# GRUB Environment Block\nsaved_entry=CentOS Linux (0-rescue-8f2c1b7d5e4a4c3b9a6d0e1f2a3b4c5d) 7 (Core)\n######\n"
	cases := []struct {
		name, cfg   string
		wantDefault int
	}{
		{"saved_entry", cfg, 1},
		{"fixed default", fixed, 0},
	}
	for _, c := range cases {
		root := guestTree(t, map[string]string{"/grub2/grub.cfg": c.cfg, "/grub2/grubenv": grubenv})
		m, err := MenuLstFromRoot(root)
		if err != nil {
			t.Fatal(err)
		}
		if m.Default != c.wantDefault {
			t.Errorf("%s: menu.lst default %d, want %d", c.name, m.Default, c.wantDefault)
		}
	}
}

// The fix check suggests, /boot/grub/grub.cfg -> ../grub2/grub.cfg, makes
// /boot/grub/grub.cfg the first config found; grub2 still keeps grubenv in
// /boot/grub2, beside the real file.
func TestMenuLstReadsGrubenvBesideALinkedGrubCfg(t *testing.T) {
	root := guestTree(t, map[string]string{
		"/boot/grub2/grub.cfg": corpus(t, "centos7.cfg"),
		"/boot/grub2/grubenv":  "# GRUB Environment Block\nsaved_entry=CentOS Linux (0-rescue-8f2c1b7d5e4a4c3b9a6d0e1f2a3b4c5d) 7 (Core)\n######\n",
		"/boot/grub/grub.cfg":  "->../grub2/grub.cfg",
	})
	m, err := MenuLstFromRoot(root)
	if err != nil {
		t.Fatal(err)
	}
	if m.Default != 1 {
		t.Errorf("menu.lst default %d, want 1 (grubenv's saved_entry, the rescue entry)", m.Default)
	}
	// EL7's /etc/grub2.cfg -> ../boot/grub2/grub.cfg, given as --grub-cfg.
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../boot/grub2/grub.cfg", filepath.Join(root, "etc/grub2.cfg")); err != nil {
		t.Fatal(err)
	}
	m, err = MenuLstFromFile(filepath.Join(root, "etc/grub2.cfg"))
	if err != nil {
		t.Fatal(err)
	}
	if m.Default != 1 {
		t.Errorf("--grub-cfg through a link: menu.lst default %d, want 1", m.Default)
	}
}

// writeMenuLst writes text to file as `menulst [--root ROOT] -w FILE` does
// and returns the backup made.
func writeMenuLst(t *testing.T, root, file, text string) string {
	t.Helper()
	w, err := PlanMenuLstWrite(root, file)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	backup, err := w.Apply([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	return backup
}

func TestLegacyRoot(t *testing.T) {
	for in, want := range map[string]string{"hd0,msdos1": "(hd0,0)", "hd0,gpt2": "(hd0,1)", "(hd1,3)": "(hd1,2)", "lvmid/x": "", "": "", "hd0,0": ""} {
		if got := legacyRoot(in); got != want {
			t.Errorf("legacyRoot(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestKickstartPostKeepsMenuLstCurrent runs the %post section against a
// folder, then a kernel update and a kernel removal through the hooks it
// installed, and checks menu.lst with pygrub 4.1's reader each time.
func TestKickstartPostKeepsMenuLstCurrent(t *testing.T) {
	sh := testenv.Need(t, "sh", "dash")
	root := guestTree(t, map[string]string{
		"/etc/fstab":                                "/dev/mapper/centos-root /     xfs  defaults 0 0\nUUID=0b1c /boot ext4 defaults 1 2\n",
		"/etc/default/grub":                         "GRUB_TIMEOUT=5\nGRUB_DISTRIBUTOR=\"$(sed 's, release .*$,,g' /etc/system-release 2>/dev/null)$NOT_SET\"\nGRUB_CMDLINE_LINUX=\"crashkernel=auto rd.lvm.lv=centos/root console=hvc0\"\n",
		"/etc/os-release":                           "NAME=\"CentOS Linux\"\nPRETTY_NAME=\"CentOS Linux 7 (Core)\"\n",
		"/boot/vmlinuz-3.10.0-123.el7.x86_64":       "k",
		"/boot/initramfs-3.10.0-123.el7.x86_64.img": "i",
	})
	post := KickstartPost("")
	body := strings.TrimSuffix(strings.TrimPrefix(post[strings.Index(post, "\n")+1:], ""), "%end\n")
	run := func(args ...string) {
		t.Helper()
		cmd := exec.Command(sh, args...)
		cmd.Env = append(os.Environ(), "OPSCTL_MENULST_ROOT="+root)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
	}
	run("-c", body)
	menu := func() *Config {
		t.Helper()
		data, err := os.ReadFile(filepath.Join(root, "boot/grub/menu.lst"))
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := Parse(data, ParserLegacy, Xen41, FromImage)
		if err != nil {
			t.Fatalf("menu.lst: %v\n%s", err, data)
		}
		return cfg
	}
	cfg := menu()
	if len(cfg.Entries) != 1 || cfg.Entries[0].Kernel != "/vmlinuz-3.10.0-123.el7.x86_64" || cfg.Entries[0].Args != "root=/dev/mapper/centos-root ro crashkernel=auto rd.lvm.lv=centos/root console=hvc0" || cfg.Entries[0].Initrd != "/initramfs-3.10.0-123.el7.x86_64.img" {
		t.Fatalf("after install: %+v", cfg.Entries)
	}
	if !strings.HasPrefix(cfg.Entries[0].Title, "CentOS Linux 7 (Core)") {
		t.Errorf("title %q", cfg.Entries[0].Title)
	}

	// yum update kernel: files land, then new-kernel-pkg runs postinst.d.
	os.WriteFile(filepath.Join(root, "boot/vmlinuz-3.10.0-1160.el7.x86_64"), []byte("k"), 0o644)
	os.WriteFile(filepath.Join(root, "boot/initramfs-3.10.0-1160.el7.x86_64.img"), []byte("i"), 0o644)
	run(filepath.Join(root, "etc/kernel/postinst.d/99-opsctl-pygrub-menulst"), "3.10.0-1160.el7.x86_64")
	cfg = menu()
	if len(cfg.Entries) != 2 || cfg.Default != 0 || cfg.Entries[0].Kernel != "/vmlinuz-3.10.0-1160.el7.x86_64" {
		t.Fatalf("after update: default %d %+v", cfg.Default, cfg.Entries)
	}

	// The old kernel is removed: prerm.d runs before its files go.
	run(filepath.Join(root, "etc/kernel/prerm.d/99-opsctl-pygrub-menulst"), "3.10.0-123.el7.x86_64")
	if cfg = menu(); len(cfg.Entries) != 1 || strings.Contains(cfg.Entries[0].Kernel, "-123.") {
		t.Fatalf("after removal: %+v", cfg.Entries)
	}
	os.Remove(filepath.Join(root, "boot/vmlinuz-3.10.0-123.el7.x86_64"))
	os.Remove(filepath.Join(root, "boot/initramfs-3.10.0-123.el7.x86_64.img"))
	// kernel-install plugin (Fedora, EL8+): removing the last kernel fails
	// and leaves menu.lst alone.
	cmd := exec.Command(sh, filepath.Join(root, "etc/kernel/install.d/99-opsctl-pygrub-menulst.install"), "remove", "3.10.0-1160.el7.x86_64")
	cmd.Env = append(os.Environ(), "OPSCTL_MENULST_ROOT="+root)
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "no kernel") {
		t.Errorf("removing the last kernel: %v %s", err, out)
	}
	if data, _ := os.ReadFile(filepath.Join(root, "boot/grub/menu.lst")); !strings.Contains(string(data), "1160") {
		t.Error("removing the last kernel emptied menu.lst")
	}
	if leftovers, _ := filepath.Glob(filepath.Join(root, "boot/grub/menu.lst.*")); len(leftovers) > 0 {
		t.Errorf("temporary files left: %v", leftovers)
	}

	rep, err := Check(root, Xen41)
	if err != nil || !rep.Bootable || rep.Config != "/boot/grub/menu.lst" {
		t.Errorf("4.1 check of the kickstarted guest: %+v %v\n%s", rep, err, problemText(rep))
	}
}

// TestKickstartNoChrootWorksOnTheInstalledSystemsFolder: with a root, the
// section is a %post --nochroot that writes menu.lst and the hooks under
// that folder, with no environment set.
func TestKickstartNoChrootWorksOnTheInstalledSystemsFolder(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Fatal(err)
	}
	root := guestTree(t, map[string]string{
		"/etc/fstab":                                "/dev/vda1 / ext4 defaults 0 0\n",
		"/etc/default/grub":                         "GRUB_CMDLINE_LINUX=\"console=hvc0\"\n",
		"/boot/vmlinuz-3.10.0-123.el7.x86_64":       "k",
		"/boot/initramfs-3.10.0-123.el7.x86_64.img": "i",
	})
	post := KickstartPost(root + "/")
	header, body, _ := strings.Cut(post, "\n")
	if !strings.HasPrefix(header, "%post --nochroot --log="+root+"/root/") {
		t.Fatalf("header %q", header)
	}
	cmd := exec.Command(sh, "-c", strings.TrimSuffix(body, "%end\n"))
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	data, err := os.ReadFile(filepath.Join(root, "boot/grub/menu.lst"))
	if err != nil || !strings.Contains(string(data), "kernel /boot/vmlinuz-3.10.0-123.el7.x86_64 root=/dev/vda1 ro console=hvc0") {
		t.Fatalf("menu.lst: %v\n%s", err, data)
	}
	if _, err := os.Stat(filepath.Join(root, "etc/kernel/postinst.d/99-opsctl-pygrub-menulst")); err != nil {
		t.Errorf("hook not installed under the root: %v", err)
	}
}
