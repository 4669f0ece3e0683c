package chain

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Client talks to the HTTP API of a running receiver (`opsctl chain
// serve`): starting runs and reading them.
type Client struct {
	// URL is the receiver's base URL, e.g. http://127.0.0.1:8686.
	URL *url.URL
	// Secret is the webhook secret, sent as X-Gitlab-Token to start a
	// run; reading runs needs none.
	Secret string
	// HTTP defaults to a client with a 30 s timeout.
	HTTP *http.Client
}

// ReceiverError is an answer of the receiver other than success. Those of
// status 500 and up are temporary: the same call may succeed later.
type ReceiverError struct {
	Host, Method, Path string
	Status             string // "404 Not Found"
	Code               int
	Message            string // the receiver's {"error": ...}
}

func (e *ReceiverError) Error() string {
	return fmt.Sprintf("receiver %s: %s %s: %s: %s", e.Host, e.Method, e.Path, e.Status, e.Message)
}

// Temporary reports whether the receiver failed rather than refused.
func (e *ReceiverError) Temporary() bool { return e.Code >= 500 }

// unreachableError: the receiver could not be asked at all.
type unreachableError struct {
	host string
	err  error
}

func (e *unreachableError) Error() string {
	if hostNotFound(e.err) {
		return fmt.Sprintf("receiver %s: its host does not resolve (no such host); check Client.URL", e.host)
	}
	return fmt.Sprintf("receiver %s: %s", e.host, networkCause(e.err))
}
func (e *unreachableError) Unwrap() error { return e.err }

// Temporary: a receiver that does not answer may answer later; a name
// that does not resolve is a wrong URL.
func (e *unreachableError) Temporary() bool { return !hostNotFound(e.err) }

// StartRun asks the receiver to start (or resume) a run from req.Project.
func (c *Client) StartRun(ctx context.Context, req StartRunRequest) (*Run, error) {
	var run *Run
	if _, err := c.call(ctx, http.MethodPost, "/runs", nil, req, &run); err != nil {
		return nil, err
	}
	return run, c.checkRun(http.MethodPost, "/runs", run)
}

// Run reads one run.
func (c *Client) Run(ctx context.Context, id string) (*Run, error) {
	var run *Run
	path := "/runs/" + url.PathEscape(id)
	if _, err := c.call(ctx, http.MethodGet, path, nil, nil, &run); err != nil {
		return nil, err
	}
	if err := c.checkRun(http.MethodGet, path, run); err != nil {
		return nil, err
	}
	if run.ID != id {
		return nil, fmt.Errorf("receiver %s: GET %s: answered run %q", c.URL.Host, path, run.ID)
	}
	return run, nil
}

// Runs lists the newest runs first, at most limit of them (0 for all). The
// receiver answers pages of at most MaxRunsPage runs; Runs asks for as many
// pages as it needs, following each page's Link to the next.
func (c *Client) Runs(ctx context.Context, limit int) ([]*Run, error) {
	var runs []*Run
	query := url.Values{}
	for {
		pageSize := MaxRunsPage
		if limit > 0 {
			pageSize = min(limit-len(runs), MaxRunsPage)
		}
		query.Set("limit", strconv.Itoa(pageSize))
		var page []*Run
		header, err := c.call(ctx, http.MethodGet, "/runs", query, nil, &page)
		if err != nil {
			return nil, err
		}
		for _, r := range page {
			if err := c.checkRun(http.MethodGet, "/runs", r); err != nil {
				return nil, err
			}
		}
		runs = append(runs, page...)
		before := nextRunsCursor(header)
		if before == "" || len(page) == 0 || (limit > 0 && len(runs) >= limit) {
			return runs, nil
		}
		if previous := query.Get("before"); previous != "" && before >= previous {
			// Ids only go back in time from page to page: this would not end.
			return nil, fmt.Errorf("receiver %s: GET /runs: the next page (before %.40q) does not go back from before %q", c.URL.Host, before, previous)
		}
		query.Set("before", before)
	}
}

// nextRunsCursor reads the before= of the rel="next" link of a page of
// GET /runs; "" when there is none (the last page).
func nextRunsCursor(h http.Header) string {
	for _, link := range h.Values("Link") {
		for _, part := range strings.Split(link, ",") {
			target, params, _ := strings.Cut(part, ";")
			if !strings.Contains(strings.ReplaceAll(params, " ", ""), `rel="next"`) {
				continue
			}
			target = strings.Trim(strings.TrimSpace(target), "<>")
			if u, err := url.Parse(target); err == nil {
				return u.Query().Get("before")
			}
		}
	}
	return ""
}

// checkRun: a run in an answer of the receiver (a network peer) must have
// the shape of a run (see Run.check): JSON null, or a step missing or
// null, is an error, never a nil dereference when it is printed.
func (c *Client) checkRun(method, path string, r *Run) error {
	err := errors.New("null")
	if r != nil {
		err = r.check()
	}
	if err != nil {
		return fmt.Errorf("receiver %s: %s %s: the answer is not a run: %v", c.URL.Host, method, path, err)
	}
	return nil
}

// RunPageURL is the address of run id's web page on the receiver (see
// RunPagePath), without any credentials the receiver's URL holds.
func (c *Client) RunPageURL(id string) string {
	page := c.URL.JoinPath("ui", "runs", id)
	page.User, page.RawQuery, page.Fragment = nil, "", ""
	return page.String()
}

// call sends one request, decodes the JSON answer into out and returns the
// answer's header.
func (c *Client) call(ctx context.Context, method, path string, query url.Values, body, out any) (http.Header, error) {
	var rd io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(data)
	}
	target := c.URL.JoinPath(path)
	target.RawQuery = query.Encode()
	req, err := http.NewRequestWithContext(ctx, method, target.String(), rd)
	if err != nil {
		return nil, err
	}
	if c.Secret != "" && method != http.MethodGet {
		req.Header.Set("X-Gitlab-Token", c.Secret)
	}
	req.Header.Set("Content-Type", "application/json")
	hc := c.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, &unreachableError{host: c.URL.Host, err: err}
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, &unreachableError{host: c.URL.Host, err: err}
	}
	if resp.StatusCode >= 300 {
		var e struct{ Error string }
		_ = json.Unmarshal(data, &e)
		return nil, &ReceiverError{Host: c.URL.Host, Method: method, Path: path, Status: resp.Status, Code: resp.StatusCode, Message: strings.TrimSpace(e.Error)}
	}
	if err := json.Unmarshal(data, out); err != nil {
		return nil, fmt.Errorf("receiver %s: %s %s: answer is not the expected JSON: %w", c.URL.Host, method, path, err)
	}
	return resp.Header, nil
}

// Summary is one line of progress: how many projects are in each state.
func (r *Run) Summary() string {
	counts := map[StepState]int{}
	for _, s := range r.Steps {
		counts[s.State]++
	}
	var parts []string
	for _, st := range []StepState{StepSucceeded, StepRunning, StepTriggered, StepQueued, StepWaiting, StepFailed, StepCanceled} {
		if counts[st] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", counts[st], st))
		}
	}
	return fmt.Sprintf("run %s %s: %s", r.ID, r.Status, strings.Join(parts, ", "))
}
