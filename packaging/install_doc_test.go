package packaging_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opsctl/opsctl/internal/testenv"
)

// The commands install.md gives for the chain's secrets must work on a
// fresh system, where the package created no /etc/opsctl.
func TestInstallDocPutsTheSecretsInPlaceOnAFreshSystem(t *testing.T) {
	text, err := os.ReadFile(filepath.Join(testenv.ModuleRoot(), "docs/install.md"))
	if err != nil {
		t.Fatal(err)
	}
	etc := filepath.Join(t.TempDir(), "etc")
	os.Mkdir(etc, 0o755)
	var ran int
	for _, line := range strings.Split(string(text), "\n") {
		command, ok := strings.CutPrefix(line, "sudo install ")
		if !ok || !strings.Contains(command, "/etc/opsctl/") {
			continue
		}
		command, _, _ = strings.Cut(command, "#")
		command = "install " + strings.ReplaceAll(command, "/etc/", etc+"/")
		cmd := exec.Command("bash", "-c", command)
		cmd.Stdin = strings.NewReader("s3cret\n")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("install.md: %s: %v\n%s", strings.TrimSpace(line), err, out)
		}
		ran++
	}
	if ran != 2 {
		t.Fatalf("install.md has %d `sudo install ... /etc/opsctl/` lines, want the token and the secret", ran)
	}
	for _, name := range []string{"gitlab-token", "webhook-secret"} {
		info, err := os.Stat(filepath.Join(etc, "opsctl", name))
		if err != nil {
			t.Errorf("after the commands of install.md: %v", err)
		} else if info.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", name, info.Mode().Perm())
		}
	}
}
