package lvmcache

import (
	"context"
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/opsctl/opsctl/internal/testenv"
)

// hungPIDs reads the pids of a hung fake lvm and its child.
func hungPIDs(t *testing.T, path string) []int {
	t.Helper()
	data, err := os.ReadFile(path + ".pids")
	if err != nil {
		t.Fatalf("the fake lvm did not hang: %v", err)
	}
	var pids []int
	for _, field := range strings.Fields(string(data)) {
		pid, _ := strconv.Atoi(field)
		pids = append(pids, pid)
	}
	return pids
}

// waitGone waits until pid has exited (gone, or a zombie nobody reaps);
// the minute is only a guard.
func waitGone(t *testing.T, pid int) {
	t.Helper()
	gone := testenv.WaitUntil(t, time.Minute, func() bool {
		stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			return true
		}
		i := strings.LastIndexByte(string(stat), ')')
		return i > 0 && strings.HasPrefix(string(stat[i+1:]), " Z")
	})
	if !gone {
		t.Errorf("pid %d still runs", pid)
	}
}

// TestAReportCancelledByItsContextKillsTheProcessGroup: an lvm2 report
// that hangs, with a child holding its output open, ends when the context
// does; the whole process group is killed, or the child would keep the
// output open and the report would wait for ever.
func TestAReportCancelledByItsContextKillsTheProcessGroup(t *testing.T) {
	m, path := newFake(t, func(s *fakeState) { s.HangOn = "lvs" })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err := m.Status(ctx, slowlv)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("status of a hung lvm2: %v, want the context's deadline", err)
	}
	for _, pid := range hungPIDs(t, path) {
		waitGone(t, pid)
	}
}

// TestAReportThatDoesNotAnswerTimesOut: without a deadline of the caller's,
// a report is bounded by ReportTimeout: a temporary error naming the
// command, and the process group is gone.
func TestAReportThatDoesNotAnswerTimesOut(t *testing.T) {
	m, path := newFake(t, func(s *fakeState) { s.HangOn = "lvs" })
	m.Runner.ReportTimeout = time.Second
	_, err := m.Status(context.Background(), slowlv)
	var timeout *TimeoutError
	var temp interface{ Temporary() bool }
	if !errors.As(err, &timeout) || !errors.As(err, &temp) || !temp.Temporary() ||
		!strings.Contains(err.Error(), "lvs did not answer within 1s and was killed") {
		t.Errorf("status of a hung lvm2: %v; want a temporary TimeoutError", err)
	}
	for _, pid := range hungPIDs(t, path) {
		waitGone(t, pid)
	}
	// The plan of a change reads the LV the same way.
	if _, err := m.PlanRemove(context.Background(), slowlv); !errors.As(err, &timeout) {
		t.Errorf("plan with a hung lvm2: %v; want a TimeoutError", err)
	}
}
