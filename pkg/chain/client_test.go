package chain

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

// TestClientStartsAndReadsRunsOnAReceiver runs the client against the
// receiver's own handler over real HTTP.
func TestClientStartsAndReadsRunsOnAReceiver(t *testing.T) {
	fx := newEngineFixture(t, testGraph("ops/base:", "ops/ruby: ops/base", "ops/app: ops/ruby"))
	srv := httptest.NewServer(fx.recv.Handler())
	defer srv.Close()
	u, _ := url.Parse(srv.URL)
	ctx := context.Background()

	var temp interface{ Temporary() bool }
	anonymous := &Client{URL: u}
	_, err := anonymous.StartRun(ctx, StartRunRequest{Project: "ops/base"})
	var refused *ReceiverError
	if !errors.As(err, &refused) || refused.Code != http.StatusUnauthorized || refused.Temporary() {
		t.Fatalf("start without the secret: %v; want a 401, not temporary", err)
	}

	client := &Client{URL: u, Secret: "s3cret"}
	run, err := client.StartRun(ctx, StartRunRequest{Project: "ops/base"})
	if err != nil {
		t.Fatal(err)
	}
	if len(run.Steps) != 3 || run.Status != RunRunning {
		t.Fatalf("started %+v; want 3 projects, running", run)
	}
	again, err := anonymous.Run(ctx, run.ID)
	if err != nil || again.ID != run.ID || len(again.Steps) != 3 {
		t.Fatalf("run %s read back as %+v: %v", run.ID, again, err)
	}
	if !strings.HasPrefix(again.Summary(), "run "+run.ID+" running: ") {
		t.Errorf("summary %q", again.Summary())
	}
	second, err := client.StartRun(ctx, StartRunRequest{Project: "ops/app"})
	if err != nil {
		t.Fatal(err)
	}
	runs, err := anonymous.Runs(ctx, 1)
	if err != nil || len(runs) != 1 || runs[0].ID != second.ID {
		t.Fatalf("newest run: %v, %v; want %s", runs, err, second.ID)
	}
	if runs, err := anonymous.Runs(ctx, 0); err != nil || len(runs) != 2 {
		t.Fatalf("all runs: %d, %v; want 2", len(runs), err)
	}

	_, err = client.StartRun(ctx, StartRunRequest{Project: "ops/base", RunID: run.ID})
	if !errors.As(err, &refused) || refused.Code != http.StatusConflict || refused.Temporary() {
		t.Fatalf("start with the id of another run: %v; want a 409, not temporary", err)
	}

	_, err = anonymous.Run(ctx, "no-such-run")
	if !errors.As(err, &refused) || refused.Code != http.StatusNotFound || errors.As(err, &temp) && temp.Temporary() {
		t.Fatalf("unknown run: %v; want a 404, not temporary", err)
	}

	srv.Close()
	_, err = anonymous.Runs(ctx, 0)
	if !errors.As(err, &temp) || !temp.Temporary() || !strings.Contains(err.Error(), u.Host) {
		t.Fatalf("receiver gone: %v; want a temporary error naming %s", err, u.Host)
	}
}

// TestClientReceiverErrorsOf5xxAreTemporary: a receiver that fails (its
// state file, say) is worth asking again; one that refuses is not.
func TestClientReceiverErrorsOf5xxAreTemporary(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
		w.Write([]byte(`{"error":"state file busy"}`))
	}))
	defer srv.Close()
	u, _ := url.Parse(srv.URL)
	_, err := (&Client{URL: u}).Run(context.Background(), "x")
	var refused *ReceiverError
	if !errors.As(err, &refused) || !refused.Temporary() || refused.Message != "state file busy" {
		t.Fatalf("503: %v; want a temporary ReceiverError with the receiver's message", err)
	}
}

// TestRunIDsSortInTheOrderRunsStarted: the state file's key order says
// which run is newest (the one a success resumes, the first one listed),
// also for runs started within the same second.
func TestRunIDsSortInTheOrderRunsStarted(t *testing.T) {
	start := time.Date(2026, 11, 26, 22, 59, 59, 0, time.UTC)
	var ids []string
	for _, after := range []time.Duration{0, 2 * time.Microsecond, time.Millisecond, 999_999 * time.Microsecond, time.Second} {
		for range 3 { // the random part never overrides the time
			id := NewRunID(start.Add(after))
			if !ValidRunID(id) {
				t.Fatalf("%s: not a valid run id", id)
			}
			ids = append(ids, id)
		}
	}
	// Every id of a later start sorts after every id of an earlier one,
	// whatever their random parts.
	for i := 3; i < len(ids); i++ {
		for _, earlier := range ids[:i-i%3] {
			if earlier >= ids[i] {
				t.Errorf("run id %s (started earlier) sorts after %s", earlier, ids[i])
			}
		}
	}
}

// A receiver is a network peer: answers with runs of the wrong shape (JSON
// null, a null step, a step missing, a list holding null) are errors that
// name the receiver, never a panic when `chain status` prints them.
func TestClientRefusesRunsOfTheWrongShape(t *testing.T) {
	const id = "20261126-101500-a1b2c3d4"
	for _, body := range []string{
		`null`,
		`{"id":"` + id + `","status":"running","waves":[["a"]],"steps":{"a":null}}`,
		`{"id":"` + id + `","status":"running","waves":[["a"],["b"]],"steps":{"a":{"state":"succeeded"}}}`,
		`{"id":"` + id + `","status":"running","waves":[["a"]],"upstreams":{"a":["x"]},"steps":{"a":{"state":"waiting"}}}`,
		`{"id":"20261126-101500-ffffffff","status":"running","waves":[["a"]],"steps":{"a":{"state":"waiting"}}}`,
	} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/runs" {
				w.Write([]byte(`[` + body + `]`))
				return
			}
			w.Write([]byte(body))
		}))
		u, _ := url.Parse(srv.URL)
		client := &Client{URL: u, Secret: "s3cret"}
		if run, err := client.Run(context.Background(), id); err == nil || !strings.Contains(err.Error(), u.Host) {
			t.Errorf("Run answered %s: %+v, %v; want an error naming the receiver", body, run, err)
		}
		if run, err := client.StartRun(context.Background(), StartRunRequest{Project: "a"}); err == nil && body != `{"id":"20261126-101500-ffffffff","status":"running","waves":[["a"]],"steps":{"a":{"state":"waiting"}}}` {
			t.Errorf("StartRun answered %s: %+v; want an error", body, run)
		}
		if runs, err := client.Runs(context.Background(), 0); err == nil && !strings.Contains(body, "ffffffff") {
			t.Errorf("Runs answered [%s]: %+v; want an error", body, runs)
		}
		srv.Close()
	}
}

// A run's page is under the receiver's URL (a path prefix included), with
// the run id escaped and without the URL's credentials.
func TestClientRunPageURL(t *testing.T) {
	for base, want := range map[string]string{
		"http://127.0.0.1:8686":                    "http://127.0.0.1:8686/ui/runs/20261126-101500-a1b2c3d4",
		"https://user:pw@ci.example.com/chain/":    "https://ci.example.com/chain/ui/runs/20261126-101500-a1b2c3d4",
		"https://ci.example.com/chain?x=1#section": "https://ci.example.com/chain/ui/runs/20261126-101500-a1b2c3d4",
	} {
		u, err := url.Parse(base)
		if err != nil {
			t.Fatal(err)
		}
		if got := (&Client{URL: u}).RunPageURL("20261126-101500-a1b2c3d4"); got != want {
			t.Errorf("%s: %s, want %s", base, got, want)
		}
	}
}
