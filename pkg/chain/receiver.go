package chain

import (
	"bufio"
	"bytes"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	gitlab "gitlab.com/gitlab-org/api/client-go/v2"
)

// MaxHookBody is the largest webhook body the receiver reads.
const MaxHookBody = 1 << 20

// Receiver is the HTTP side of `chain serve`: GitLab's webhooks in, runs
// and metrics out.
type Receiver struct {
	Engine *Engine
	// Secret is the webhook secret token GitLab sends as X-Gitlab-Token.
	// Without one, POST /hook is refused too unless InsecureNoSecret says
	// otherwise, and POST /runs is always refused.
	Secret string
	// InsecureNoSecret: the admin chose to run without a secret, and
	// anyone who reaches the receiver can post webhooks. Starting runs
	// (POST /runs, which creates pipelines) is still refused.
	InsecureNoSecret bool
	Metrics          *Metrics
	Gatherer         prometheus.Gatherer
	// Log, when set, gets the errors of the state file.
	Log *slog.Logger
	// GitLabURL is the GitLab the receiver talks to: a run page links a
	// project to its pipeline page only on this host ("" : no links).
	GitLabURL string
	// DepsChanged is called when a push to a default branch touches a
	// dependency file: the graph should be scanned again.
	DepsChanged func(project string)

	// runPages keeps the run pages drawn last (pages.go).
	runPages runPageCache
	// reads bounds the requests that read runs at once (reads.go).
	reads readLimiter
}

// Handler routes the receiver's endpoints: the one place where a route of
// the receiver is added (Server serves this handler).
func (rc *Receiver) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /hook", rc.hook)
	mux.HandleFunc("POST /runs", rc.startRun)
	mux.HandleFunc("GET /runs", rc.reads.limit(rc.listRuns, jsonBusy))
	mux.HandleFunc("GET /runs/{id}", rc.reads.limit(rc.getRun, jsonBusy))
	mux.HandleFunc("GET /healthz", rc.healthz)
	// The web pages (pages.go): read-only, beside the JSON API.
	mux.HandleFunc("GET /{$}", rc.reads.limit(rc.runsPage, pageBusy))
	mux.HandleFunc("GET /ui/runs/{id}", rc.reads.limit(rc.runPage, pageBusy))
	mux.HandleFunc("GET /ui/static/{name}", rc.staticFile)
	if rc.Gatherer != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(rc.Gatherer, promhttp.HandlerOpts{}))
	}
	return mux
}

// knownEvents are the X-Gitlab-Event values GitLab sends from project,
// group and system hooks: the label of the events metric is the header's
// value for these and "other" for anything else, so that whoever can reach
// the receiver cannot grow the metric without bound.
var knownEvents = []string{
	"Push Hook", "Tag Push Hook", "Issue Hook", "Confidential Issue Hook",
	"Note Hook", "Confidential Note Hook", "Merge Request Hook", "Wiki Page Hook",
	"Pipeline Hook", "Job Hook", "Deployment Hook", "Feature Flag Hook",
	"Release Hook", "Milestone Hook", "Emoji Hook", "Resource Access Token Hook",
	"Resource Deploy Token Hook", "Vulnerability Hook", "Member Hook",
	"Project Hook", "Subgroup Hook", "System Hook",
}

func eventLabel(event string) string {
	if slices.Contains(knownEvents, event) {
		return event
	}
	return "other"
}

func (rc *Receiver) count(event, result string) {
	if rc.Metrics != nil {
		rc.Metrics.Events.WithLabelValues(eventLabel(event), result).Inc()
	}
}

// tokenMatches compares the request's X-Gitlab-Token with the secret in
// constant time; false when there is no secret.
func (rc *Receiver) tokenMatches(r *http.Request) bool {
	if rc.Secret == "" {
		return false
	}
	token := r.Header.Get("X-Gitlab-Token")
	return subtle.ConstantTimeCompare([]byte(token), []byte(rc.Secret)) == 1
}

// hookAuthorized: the right token, or no secret by the admin's choice.
func (rc *Receiver) hookAuthorized(r *http.Request) bool {
	return rc.tokenMatches(r) || (rc.Secret == "" && rc.InsecureNoSecret)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

// httpError answers {"error": msg} on one line: a person reading GitLab's
// hook log or curl's output sees one line saying what was wrong.
func httpError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(map[string]string{"error": msg})
}

// readBody reads at most MaxHookBody bytes; false when it answered already.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxHookBody))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			httpError(w, http.StatusRequestEntityTooLarge, "body over 1 MiB")
		} else {
			httpError(w, http.StatusBadRequest, "reading the body: "+err.Error())
		}
		return nil, false
	}
	return body, true
}

// hook takes a GitLab webhook. GitLab disables a hook that keeps getting
// 4xx answers, so a well-formed event that is not for us gets 204.
func (rc *Receiver) hook(w http.ResponseWriter, r *http.Request) {
	event := r.Header.Get("X-Gitlab-Event")
	if !rc.hookAuthorized(r) {
		rc.count(event, "rejected")
		httpError(w, http.StatusUnauthorized, "wrong or missing X-Gitlab-Token")
		return
	}
	body, ok := readBody(w, r)
	if !ok {
		rc.count(event, "rejected")
		return
	}
	if !json.Valid(body) {
		rc.count(event, "rejected")
		httpError(w, http.StatusBadRequest, "body is not JSON")
		return
	}
	switch gitlab.EventType(event) {
	case gitlab.EventTypePipeline:
		rc.pipelineHook(w, body)
	case gitlab.EventTypePush:
		rc.pushHook(w, body)
	default:
		rc.count(event, "ignored")
		w.WriteHeader(http.StatusNoContent)
	}
}

func (rc *Receiver) pipelineHook(w http.ResponseWriter, body []byte) {
	const event = "Pipeline Hook"
	u, err := ParsePipelineHook(body)
	if err != nil {
		rc.count(event, "rejected")
		httpError(w, http.StatusBadRequest, err.Error())
		return
	}
	out, err := rc.Engine.HandlePipeline(u)
	if err != nil {
		if rc.Log != nil {
			rc.Log.Error("webhook not stored", "err", err)
		}
		rc.count(event, "rejected")
		httpError(w, http.StatusServiceUnavailable, "state not writable")
		return
	}
	if !out.Acted {
		rc.count(event, "ignored")
		w.WriteHeader(http.StatusNoContent)
		return
	}
	rc.count(event, "accepted")
	writeJSON(w, http.StatusOK, map[string]any{"run": out.RunID, "queued": out.Queued})
}

// DependencyFiles are the files whose change changes the graph.
var DependencyFiles = []string{DepsFileName, "Containerfile", "Dockerfile"}

func (rc *Receiver) pushHook(w http.ResponseWriter, body []byte) {
	const event = "Push Hook"
	ev, err := ParsePushHook(body)
	if err != nil {
		rc.count(event, "rejected")
		httpError(w, http.StatusBadRequest, err.Error())
		return
	}
	touched := false
	if ev.Ref == "refs/heads/"+ev.DefaultBranch {
		// GitLab lists at most 20 commits: the others may have changed one.
		touched = ev.Unlisted
		for _, f := range ev.Files {
			if slices.Contains(DependencyFiles, f) || slices.Contains(DependencyFiles, path.Base(f)) {
				touched = true
			}
		}
	}
	if !touched || rc.DepsChanged == nil {
		rc.count(event, "ignored")
		w.WriteHeader(http.StatusNoContent)
		return
	}
	rc.count(event, "accepted")
	rc.DepsChanged(ev.Project)
	w.WriteHeader(http.StatusAccepted)
}

// StartRunRequest is the body of POST /runs.
type StartRunRequest struct {
	Project string `json:"project"`
	RunID   string `json:"run_id,omitempty"`
	// Ref of the root's pipeline; default its default branch.
	Ref string `json:"ref,omitempty"`
}

// parseStartRunRequest reads the body of POST /runs: one object with a
// valid project path and no other fields than StartRunRequest's, since it
// is opsctl's own API and a field it does not know is a mistake.
func parseStartRunRequest(body []byte) (StartRunRequest, error) {
	const expected = `expected {"project":"group/project"} with optional "ref" and "run_id"`
	var req StartRunRequest
	dec := json.NewDecoder(bytes.NewReader(body))
	var raw json.RawMessage
	if err := dec.Decode(&raw); err != nil || dec.More() {
		return req, errors.New("body is not one JSON object: " + expected)
	}
	if trimmed := bytes.TrimSpace(raw); len(trimmed) == 0 || trimmed[0] != '{' {
		return req, errors.New("body is not a JSON object: " + expected)
	}
	dec = json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		// The message may quote a field name of the body: keep it short.
		return req, fmt.Errorf("%s: %s", truncate(strings.TrimPrefix(err.Error(), "json: "), 160), expected)
	}
	if req.Project == "" {
		return req, errors.New("project: missing: " + expected)
	}
	if err := ValidateProjectPath(req.Project); err != nil {
		return req, fmt.Errorf("project: %v", err)
	}
	return req, nil
}

// startRun is the endpoint of Client.StartRun: it creates pipelines, so it
// needs the webhook secret, always: a receiver running without one refuses
// it.
func (rc *Receiver) startRun(w http.ResponseWriter, r *http.Request) {
	if rc.Secret == "" {
		httpError(w, http.StatusForbidden, "POST /runs is refused: this receiver runs without a webhook secret (--insecure-no-webhook-secret)")
		return
	}
	if !rc.tokenMatches(r) {
		httpError(w, http.StatusUnauthorized, "wrong or missing X-Gitlab-Token")
		return
	}
	body, ok := readBody(w, r)
	if !ok {
		return
	}
	req, err := parseStartRunRequest(body)
	if err != nil {
		httpError(w, http.StatusBadRequest, err.Error())
		return
	}
	run, err := rc.Engine.StartRun([]string{req.Project}, req.RunID, req.Project, req.Ref)
	if err != nil {
		var unknown *UnknownProjectError
		var cycle *CycleError
		var badID *RunIDError
		var inUse *RunIDInUseError
		switch {
		case errors.As(err, &badID):
			httpError(w, http.StatusBadRequest, badID.Error())
		case errors.As(err, &inUse):
			httpError(w, http.StatusConflict, inUse.Error())
		case errors.As(err, &unknown), errors.As(err, &cycle):
			httpError(w, http.StatusUnprocessableEntity, err.Error())
		default:
			httpError(w, http.StatusServiceUnavailable, err.Error())
		}
		return
	}
	writeJSON(w, http.StatusCreated, run)
}

// listRuns answers one page of runs, newest first: ?limit=N (1 to
// MaxRunsPage, default DefaultRunsPage) and ?before=RUN, the cursor that
// the Link header (rel="next") of the previous page gives.
func (rc *Receiver) listRuns(w http.ResponseWriter, r *http.Request) {
	query := r.URL.Query()
	limit := DefaultRunsPage
	if s := query.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > MaxRunsPage {
			httpError(w, http.StatusBadRequest, fmt.Sprintf("limit %.20q: expected a number from 1 to %d (default %d); page on with before=RUN, as the Link header says", s, MaxRunsPage, DefaultRunsPage))
			return
		}
		limit = n
	}
	before := query.Get("before")
	if before != "" && !ValidRunID(before) {
		httpError(w, http.StatusBadRequest, fmt.Sprintf("before %.40q: expected a run id (YYYYMMDD-HHMMSS-xxxxxxxx)", before))
		return
	}
	page, err := rc.Engine.RunsBefore(before, limit)
	if err != nil {
		httpError(w, http.StatusInternalServerError, err.Error())
		return
	}
	if page.Next != "" {
		next := url.Values{"before": {page.Next}, "limit": {strconv.Itoa(limit)}}
		w.Header().Set("Link", fmt.Sprintf(`</runs?%s>; rel="next"`, next.Encode()))
	}
	w.Header().Set("Content-Type", "application/json")
	// Run by run, so that the indented page is never all in memory at once.
	bw := bufio.NewWriter(w)
	bw.WriteString("[")
	for i, run := range page.Runs {
		if i > 0 {
			bw.WriteString(",")
		}
		data, err := json.MarshalIndent(run, "  ", "  ")
		if err != nil {
			break
		}
		bw.WriteString("\n  ")
		bw.Write(data)
	}
	if len(page.Runs) > 0 {
		bw.WriteString("\n")
	}
	bw.WriteString("]\n")
	bw.Flush()
}

func (rc *Receiver) getRun(w http.ResponseWriter, r *http.Request) {
	run, err := rc.Engine.Run(r.PathValue("id"))
	switch {
	case err != nil:
		httpError(w, http.StatusInternalServerError, err.Error())
	case run == nil:
		httpError(w, http.StatusNotFound, "no run "+strings.TrimSpace(r.PathValue("id")))
	default:
		writeJSON(w, http.StatusOK, run)
	}
}

// healthz answers 503 with one line when the state file cannot store
// events: the condition that makes /hook answer 503.
func (rc *Receiver) healthz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if err := rc.Engine.Writable(); err != nil {
		w.WriteHeader(http.StatusServiceUnavailable)
		io.WriteString(w, "unhealthy: "+strings.ReplaceAll(err.Error(), "\n", " ")+"\n")
		return
	}
	io.WriteString(w, "ok\n")
}
