package pygrubfix

import (
	"strings"
	"testing"
)

// TestCheckRootRefusesAConfigThatIsNotAFile: a guest whose grub.cfg is a
// FIFO (or, through a symlink, a device node such as /dev/zero in a
// mounted guest) is reported, not read forever.
func TestCheckRootRefusesAConfigThatIsNotAFile(t *testing.T) {
	root := guestTree(t, map[string]string{
		"/boot/grub/grub.cfg": "->/dev/guestpipe",
		"/etc/fstab":          "->/dev/guestpipe",
		"/dev/guestpipe":      guestFIFO,
	})
	for _, rel := range []*Release{Xen417, Xen41} {
		rep, err := Check(root, rel)
		if err != nil {
			t.Fatalf("%s: %v", rel.Name, err)
		}
		if rep.Bootable || !strings.Contains(problemText(rep), "/boot/grub/grub.cfg: a FIFO, expected a regular file") {
			t.Errorf("%s: %+v\n%s", rel.Name, rep, problemText(rep))
		}
	}
	if _, err := MenuLstFromRoot(root); err == nil || !strings.Contains(err.Error(), "/boot/grub/grub.cfg: a FIFO, expected a regular file") {
		t.Errorf("menulst --root: %v", err)
	}
}
