package chain

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"
)

// loadReceiver sends n pipeline-success deliveries of the root of a chain
// from senders concurrent clients to a receiver over real HTTP with its
// state on disk, and returns each delivery's response time. Every delivery
// starts a run, so each one is a durable write.
func loadReceiver(tb testing.TB, n, senders int) ([]time.Duration, *engineFixture) {
	tb.Helper()
	fx := newEngineFixture(tb, testGraph("ops/base:", "ops/ruby: ops/base", "ops/python: ops/base", "ops/app: ops/ruby ops/python"))
	srv := httptest.NewServer(fx.recv.Handler())
	defer srv.Close()
	bodies := make([][]byte, n)
	for i := range bodies {
		bodies[i] = pipelineHook(tb, "ops/base", int64(100000+i), "success", hookOpts{})
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: senders}}
	latencies := make([]time.Duration, n)
	var wg sync.WaitGroup
	next := make(chan int)
	errs := make(chan error, senders)
	for range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				req, _ := http.NewRequest("POST", srv.URL+"/hook", bytes.NewReader(bodies[i]))
				req.Header.Set("X-Gitlab-Event", "Pipeline Hook")
				req.Header.Set("X-Gitlab-Token", "s3cret")
				start := time.Now()
				resp, err := client.Do(req)
				latencies[i] = time.Since(start)
				if err == nil {
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						err = fmt.Errorf("delivery %d: HTTP %d", i, resp.StatusCode)
					}
				}
				if err != nil {
					// Keep taking deliveries: a sender that quits would
					// leave the feeder blocked once all of them quit.
					select {
					case errs <- err:
					default:
					}
				}
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	close(errs)
	for err := range errs {
		tb.Fatal(err)
	}
	return latencies, fx
}

func percentile(d []time.Duration, p float64) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[min(len(s)-1, int(float64(len(s))*p))]
}

// TestConcurrentDeliveriesAreNeverLost: every acknowledged delivery is a
// run in the state file, reopened after the load.
func TestConcurrentDeliveriesAreNeverLost(t *testing.T) {
	const n, senders = 1000, 50
	_, fx := loadReceiver(t, n, senders)
	fx.reopen()
	runs, err := fx.engine.Runs(0)
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != n {
		t.Fatalf("%d runs after %d acknowledged deliveries", len(runs), n)
	}
	seen := map[int64]bool{}
	for _, r := range runs {
		seen[r.Steps["ops/base"].PipelineID] = true
		if r.Steps["ops/ruby"].State != StepQueued || r.Steps["ops/python"].State != StepQueued {
			t.Fatalf("run %s: downstream not queued: %+v", r.ID, r.Steps)
		}
	}
	if len(seen) != n {
		t.Errorf("%d distinct pipelines among %d runs", len(seen), n)
	}
}

// BenchmarkWebhookDeliveries: 5,000 deliveries from 50 concurrent senders
// (the load of the chain-engine issue); reports p50 and p99 response times.
func BenchmarkWebhookDeliveries(b *testing.B) {
	for b.Loop() {
		latencies, _ := loadReceiver(b, 5000, 50)
		b.ReportMetric(float64(percentile(latencies, 0.50).Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(percentile(latencies, 0.99).Microseconds())/1000, "p99-ms")
		b.ReportMetric(float64(percentile(latencies, 1).Microseconds())/1000, "max-ms")
	}
}
