package sockspy

import (
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
)

// An abstract socket has no file: nothing gives it a mode or an owner, so
// the dry run must not promise them.
func TestPlanStepsGiveNoModeToAnAbstractProxy(t *testing.T) {
	srv := filepath.Join(t.TempDir(), "srv.sock")
	serveStream(t, srv, func(c net.Conn) { c.Close() })
	plan, err := NewPlan(Config{Socket: srv, Listen: fmt.Sprintf("@opsctl-plan-test-%d", 1+len(srv))})
	if err != nil {
		t.Fatal(err)
	}
	steps := strings.Join(plan.Steps(), "\n")
	if strings.Contains(steps, "mode") || strings.Contains(steps, "owner") {
		t.Errorf("steps for an abstract --listen name a mode or owner:\n%s", steps)
	}
}
