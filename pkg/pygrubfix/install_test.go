package pygrubfix

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestInstallStaysInTheGuest attacks --install with a guest whose
// /boot/grub, or the files in it, lead out of the guest or are not
// regular files: nothing outside the guest is written, nothing that is
// not a regular file is replaced, and the plan says why.
func TestInstallStaysInTheGuest(t *testing.T) {
	outside := t.TempDir()
	victim := filepath.Join(outside, "menu.lst")
	os.WriteFile(victim, []byte("host file\n"), 0o600)
	cases := map[string]func(root string){
		"grub.cfg a symlink to a host file": func(root string) {
			os.Mkdir(filepath.Join(root, "boot/grub"), 0o755)
			os.Symlink(victim, filepath.Join(root, "boot/grub/grub.cfg"))
		},
		"menu.lst a FIFO": func(root string) {
			os.Mkdir(filepath.Join(root, "boot/grub"), 0o755)
			syscall.Mkfifo(filepath.Join(root, "boot/grub/menu.lst"), 0o644)
		},
		"/boot/grub a relative symlink climbing out": func(root string) {
			os.Symlink(strings.Repeat("../", 12)+strings.TrimPrefix(outside, "/"), filepath.Join(root, "boot/grub"))
		},
		"/boot/grub an absolute symlink to a host folder": func(root string) {
			os.Symlink(outside, filepath.Join(root, "boot/grub"))
		},
	}
	for name, attack := range cases {
		t.Run(name, func(t *testing.T) {
			root := guestTree(t, el9Tree(t))
			attack(root)
			plan, err := PlanInstall(root, true)
			if err == nil {
				err = plan.Apply()
				plan.Close()
			}
			if err == nil {
				t.Fatal("installed")
			}
			var in *InputError
			if errors.As(err, &in) {
				t.Errorf("a guest's content is no usage error: %v", err)
			}
			t.Log(err)
			outsideUntouched(t, outside, victim, "host file\n")
		})
	}
}

// outsideUntouched checks an attack on a guest left the host alone: the
// folder outside holds only victim, which still holds want.
func outsideUntouched(t *testing.T, outside, victim, want string) {
	t.Helper()
	if data, _ := os.ReadFile(victim); string(data) != want {
		t.Fatalf("the file outside the guest was changed: %q", data)
	}
	if left, _ := os.ReadDir(outside); len(left) != 1 {
		t.Errorf("files made outside the guest: %v", left)
	}
}
