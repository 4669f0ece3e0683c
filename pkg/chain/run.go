package chain

import (
	"net/url"
	"strings"
	"time"
)

// RunVariable is the CI/CD variable every pipeline the engine creates
// carries: the id of its chain run.
const RunVariable = "OPSCTL_CHAIN_RUN"

// RootsVariable is set on the root pipelines of a run with several roots
// (a base image used by several projects): the projects, comma-separated.
// A receiver that adopts such a run from a pipeline it did not create (one
// started by a Watcher or a trigger on another state file) plans it with
// all its roots, so a project below two of them is built once, after both.
const RootsVariable = "OPSCTL_CHAIN_ROOTS"

// RunStatus is where a chain run stands.
type RunStatus string

const (
	// RunRunning: some project of the plan is still to be built.
	RunRunning RunStatus = "running"
	// RunSucceeded: every project of the plan succeeded.
	RunSucceeded RunStatus = "succeeded"
	// RunFailed: a project failed or was canceled and its downstream waits.
	// Not final: when that project later succeeds, the run continues.
	RunFailed RunStatus = "failed"
)

// StepState is where one project of a run stands.
type StepState string

const (
	StepWaiting   StepState = "waiting"   // upstreams of the plan not all succeeded yet
	StepQueued    StepState = "queued"    // its pipeline is to be created (an intent is recorded)
	StepTriggered StepState = "triggered" // its pipeline was created
	StepRunning   StepState = "running"   // GitLab reported the pipeline pending or running
	StepSucceeded StepState = "succeeded"
	StepFailed    StepState = "failed"
	StepCanceled  StepState = "canceled"
)

// Step is one project of a run.
type Step struct {
	State      StepState `json:"state"`
	PipelineID int64     `json:"pipeline_id,omitempty"`
	// PipelineURL is the pipeline's page in GitLab, as GitLab gave it (the
	// web_url of the created pipeline, the url of its Pipeline Hook); only
	// an http(s) URL is kept.
	PipelineURL string `json:"pipeline_url,omitempty"`
	// Reason says why a step failed, in words for the admin.
	Reason  string    `json:"reason,omitempty"`
	Updated time.Time `json:"updated"`
}

// setPipeline makes u's pipeline the step's: a page that GitLab names for
// it is kept, and the page of an earlier pipeline is forgotten.
func (s *Step) setPipeline(u PipelineUpdate) {
	if s.PipelineID != u.PipelineID {
		s.PipelineURL = ""
	}
	s.PipelineID = u.PipelineID
	if page := PipelinePageURL(u.PipelineURL); page != "" {
		s.PipelineURL = page
	}
}

// MaxPipelineURL bounds the length of a pipeline page's URL the engine
// keeps.
const MaxPipelineURL = 2048

// PipelinePageURL returns s when it is an absolute http or https URL of at
// most MaxPipelineURL bytes, without white space, control characters or
// characters that a URL must not hold unescaped (quotes, <, >, ...), and ""
// otherwise: what GitLab (or whoever posts webhooks) says is a pipeline's
// page becomes a link on the run page only in that shape.
func PipelinePageURL(s string) string {
	if s == "" || len(s) > MaxPipelineURL || strings.ContainsAny(s, "\"'<>\\`{}|^") ||
		strings.ContainsFunc(s, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return ""
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Opaque != "" || u.User != nil {
		return ""
	}
	return s
}

// Run is one rebuild of the chain: the plan downstream of its roots,
// frozen when the run starts (a rescan changes later runs, not this one),
// and the state of each project.
type Run struct {
	ID      string    `json:"id"`
	Roots   []string  `json:"roots"`
	Status  RunStatus `json:"status"`
	Created time.Time `json:"created"`
	// Finished is set when the run succeeded.
	Finished *time.Time `json:"finished,omitempty"`
	// StartedBy says what started the run: a pipeline of a root, a
	// trigger, an external image change.
	StartedBy string     `json:"started_by"`
	Waves     [][]string `json:"waves"`
	// Upstreams holds, for each project of the plan, its upstreams that
	// are in the plan.
	Upstreams map[string][]string `json:"upstreams"`
	// Targets holds how to create each project's pipeline.
	Targets map[string]Target `json:"targets"`
	Steps   map[string]*Step  `json:"steps"`
}

// Target is what the GitLab API needs to create a project's pipeline.
type Target struct {
	ProjectID int64  `json:"project_id,omitempty"`
	Ref       string `json:"ref"`
}

// ready lists the waiting projects of the run whose upstreams of the plan
// have all succeeded, in plan order.
func (r *Run) ready() []string {
	var out []string
	for _, wave := range r.Waves {
		for _, p := range wave {
			if r.Steps[p].State != StepWaiting {
				continue
			}
			ok := true
			for _, up := range r.Upstreams[p] {
				if r.Steps[up].State != StepSucceeded {
					ok = false
					break
				}
			}
			if ok {
				out = append(out, p)
			}
		}
	}
	return out
}

// updateStatus derives the run's status from its steps.
func (r *Run) updateStatus(now time.Time) {
	status := RunSucceeded
	for _, s := range r.Steps {
		switch s.State {
		case StepFailed, StepCanceled:
			status = RunFailed
		case StepSucceeded:
		default:
			if status != RunFailed {
				status = RunRunning
			}
		}
	}
	r.Status = status
	if status == RunSucceeded && r.Finished == nil {
		r.Finished = &now
	}
}

// projects lists the projects of the plan in plan order.
func (r *Run) projects() []string {
	var out []string
	for _, w := range r.Waves {
		out = append(out, w...)
	}
	return out
}
