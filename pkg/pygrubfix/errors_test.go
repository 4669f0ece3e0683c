package pygrubfix

import (
	"errors"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/opsctl/opsctl/internal/inputerr"
)

// opsctlFlag matches a command-line flag in a message.
var opsctlFlag = regexp.MustCompile(`(^|[ (])--?[a-z]`)

// TestErrorsNameInputsInTheirGoTerms: an input the package cannot use is
// named as a Go program passes it (Release.Name, ParseURI.uri,
// PlanInstall.hook), and hints name the function to call: the package
// does not speak of opsctl's flags, the command renames.
func TestErrorsNameInputsInTheirGoTerms(t *testing.T) {
	el7 := guestTree(t, map[string]string{"/boot/grub2/grub.cfg": corpus(t, "centos7.cfg")})
	blsCfg, _ := filepath.Abs(filepath.Join("testdata/corpus", "rhel8-kernelopts.cfg"))
	saved := DefaultPygrubs
	DefaultPygrubs = []string{filepath.Join(t.TempDir(), "no-xen-*/bin/pygrub")}
	t.Cleanup(func() { DefaultPygrubs = saved })

	_, releaseErr := LookupRelease("3.4")
	_, uriErr := ParseURI("nope")
	_, transportErr := ParseURI("xen+bogus:///system")
	_, hookErr := PlanInstall(el7, true)
	_, blsErr := MenuLstFromFile(blsCfg)
	_, findErr := FindParsers("")
	for _, c := range []struct {
		err       error
		input     string // the *inputerr.Error's Name, "" when a hint names it
		wantInMsg string
	}{
		{releaseErr, "Release.Name", `Release.Name "3.4": expected 4.17 or 4.1`},
		{uriErr, "ParseURI.uri", `ParseURI.uri "nope": expected a libvirt URI`},
		{transportErr, "ParseURI.uri", `unsupported transport "bogus"`},
		{hookErr, "PlanInstall.hook", "PlanInstall.hook: no Boot Loader Spec entries (an EL7-style guest installs kernels through new-kernel-pkg, not kernel-install): keep its menu.lst current with the KickstartPost %post section instead"},
		{blsErr, "", "use MenuLstFromRoot with the guest's root folder"},
		{findErr, "", "(give FindParsers.pygrub PATH)"},
	} {
		if c.err == nil {
			t.Errorf("no error, want one saying %q", c.wantInMsg)
			continue
		}
		msg := c.err.Error()
		if !strings.Contains(msg, c.wantInMsg) || opsctlFlag.MatchString(msg) {
			t.Errorf("%q: want it to say %q and name no flag", msg, c.wantInMsg)
		}
		var in *inputerr.Error
		if c.input != "" && (!errors.As(c.err, &in) || in.Name != c.input) {
			t.Errorf("%q: want an *inputerr.Error of %s", msg, c.input)
		}
	}
}
