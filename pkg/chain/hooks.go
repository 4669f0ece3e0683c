package chain

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"strings"
	"sync/atomic"
)

// HookAPI is what hooks sync needs of GitLab; *GitLab implements it.
type HookAPI interface {
	ProjectHooks(ctx context.Context, project ProjectRef) ([]Hook, error)
	AddProjectHook(ctx context.Context, project ProjectRef, s HookSettings) (int64, error)
	EditProjectHook(ctx context.Context, project ProjectRef, id int64, s HookSettings) error
	DeleteProjectHook(ctx context.Context, project ProjectRef, id int64) error
}

// Hook actions.
const (
	HookAdd       = "add"
	HookUpdate    = "update"
	HookUnchanged = "unchanged"
)

// HookAction is what hooks sync does to one project.
type HookAction struct {
	Project ProjectRef
	Kind    string // add, update or unchanged
	HookID  int64  // the hook edited (update)
	// Changes name what an update changes ("push_events true -> false",
	// "token": a token is always rewritten since GitLab never shows it).
	Changes []string
	// Duplicates are further hooks for the same URL, deleted by the update.
	Duplicates []int64
	// Replace: GitLab disabled the hook, which no edit enables again; the
	// update adds a new hook, then deletes this one.
	Replace bool
}

// HookPlan is the result of comparing every project's hooks with the
// wanted hook.
type HookPlan struct {
	Want    HookSettings
	Actions []HookAction // in project order
}

// WantedHook is the hook every project must end with: pipeline events on,
// push events off, SSL verification on, secret as its token.
func WantedHook(url, secret string) HookSettings {
	return HookSettings{URL: url, PipelineEvents: true, PushEvents: false, EnableSSLVerification: true, Token: secret}
}

// PlanHooks reads the hooks of every project (concurrency at a time) and
// decides what to do to each. It changes nothing.
func PlanHooks(ctx context.Context, api HookAPI, projects []ProjectRef, want HookSettings, concurrency int) (*HookPlan, error) {
	plan := &HookPlan{Want: want, Actions: make([]HookAction, len(projects))}
	err := forEach(ctx, len(projects), concurrency, func(ctx context.Context, i int) error {
		hooks, err := api.ProjectHooks(ctx, projects[i])
		if err != nil {
			return err
		}
		plan.Actions[i] = decideHook(projects[i], hooks, want)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return plan, nil
}

// sameHookURL reports whether two hook URLs name the same receiver
// endpoint: scheme and host in any case, a trailing slash or not.
func sameHookURL(a, b string) bool {
	ua, errA := url.Parse(a)
	ub, errB := url.Parse(b)
	if errA != nil || errB != nil {
		return a == b
	}
	return strings.EqualFold(ua.Scheme, ub.Scheme) && strings.EqualFold(ua.Host, ub.Host) &&
		strings.TrimSuffix(ua.EscapedPath(), "/") == strings.TrimSuffix(ub.EscapedPath(), "/") &&
		ua.RawQuery == ub.RawQuery
}

func decideHook(project ProjectRef, hooks []Hook, want HookSettings) HookAction {
	action := HookAction{Project: project, Kind: HookAdd}
	var match *Hook
	for i := range hooks {
		if !sameHookURL(hooks[i].URL, want.URL) {
			continue
		}
		if match == nil {
			match = &hooks[i]
		} else {
			action.Duplicates = append(action.Duplicates, hooks[i].ID)
		}
	}
	if match == nil {
		return action
	}
	action.Kind, action.HookID = HookUnchanged, match.ID
	diff := func(name string, have, wanted bool) {
		if have != wanted {
			action.Changes = append(action.Changes, fmt.Sprintf("%s %t -> %t", name, have, wanted))
		}
	}
	if match.URL != want.URL {
		action.Changes = append(action.Changes, fmt.Sprintf("url %s -> %s", match.URL, want.URL))
	}
	diff("pipeline_events", match.PipelineEvents, want.PipelineEvents)
	diff("push_events", match.PushEvents, want.PushEvents)
	diff("enable_ssl_verification", match.EnableSSLVerification, want.EnableSSLVerification)
	switch {
	case match.Disabled && match.HasToken && want.Token == "":
		// A new hook would lose the token, which cannot be read.
		action.Changes = append(action.Changes, "GitLab disabled it after failed deliveries: give HookSettings.Token to replace it")
	case match.Disabled:
		// An edit leaves a hook disabled: replace it.
		action.Replace = true
		action.Changes = []string{"replace it: GitLab disabled it after failed deliveries"}
	case want.Token != "":
		action.Changes = append(action.Changes, "token (GitLab never shows it, so it is always rewritten)")
	}
	for _, id := range action.Duplicates {
		action.Changes = append(action.Changes, fmt.Sprintf("delete duplicate hook %d", id))
	}
	if len(action.Changes) > 0 {
		action.Kind = HookUpdate
	}
	return action
}

// HookCounts are the outcome of a sync.
type HookCounts struct{ Added, Updated, Unchanged int }

func (c HookCounts) String() string {
	return fmt.Sprintf("added %d, updated %d, unchanged %d", c.Added, c.Updated, c.Unchanged)
}

// Counts is what the plan would do.
func (p *HookPlan) Counts() HookCounts {
	var c HookCounts
	for _, a := range p.Actions {
		switch a.Kind {
		case HookAdd:
			c.Added++
		case HookUpdate:
			c.Updated++
		default:
			c.Unchanged++
		}
	}
	return c
}

// WriteDryRun names every project the plan would change, one a line,
// then the counts. The secret is never written.
func (p *HookPlan) WriteDryRun(w io.Writer) error {
	var b strings.Builder
	for _, a := range p.Actions {
		switch a.Kind {
		case HookAdd:
			fmt.Fprintf(&b, "add hook to %s: url %s, pipeline_events true, push_events false, enable_ssl_verification true%s\n",
				a.Project.Path, p.Want.URL, map[bool]string{true: ", token", false: ""}[p.Want.Token != ""])
		case HookUpdate:
			fmt.Fprintf(&b, "update hook %d of %s: %s\n", a.HookID, a.Project.Path, strings.Join(a.Changes, ", "))
		}
	}
	fmt.Fprintf(&b, "dry run: would have %s\n", p.Counts())
	_, err := io.WriteString(w, b.String())
	return err
}

// Apply carries the plan out, concurrency projects at a time. On error it
// returns the counts of what was done so far; running hooks sync again
// finishes the job (a half-done project cannot occur: each project is one
// API call, plus deletion of duplicates after its edit).
func (p *HookPlan) Apply(ctx context.Context, api HookAPI, concurrency int) (HookCounts, error) {
	var added, updated, unchanged atomic.Int64
	err := forEach(ctx, len(p.Actions), concurrency, func(ctx context.Context, i int) error {
		a := p.Actions[i]
		switch a.Kind {
		case HookAdd:
			if _, err := api.AddProjectHook(ctx, a.Project, p.Want); err != nil {
				return err
			}
			added.Add(1)
		case HookUpdate:
			if a.Replace {
				// Add first: a failure in between leaves a duplicate,
				// which the next sync deletes, never no hook.
				if _, err := api.AddProjectHook(ctx, a.Project, p.Want); err != nil {
					return err
				}
				if err := api.DeleteProjectHook(ctx, a.Project, a.HookID); err != nil {
					return err
				}
			} else if err := api.EditProjectHook(ctx, a.Project, a.HookID, p.Want); err != nil {
				return err
			}
			for _, id := range a.Duplicates {
				if err := api.DeleteProjectHook(ctx, a.Project, id); err != nil {
					return err
				}
			}
			updated.Add(1)
		default:
			unchanged.Add(1)
		}
		return nil
	})
	return HookCounts{Added: int(added.Load()), Updated: int(updated.Load()), Unchanged: int(unchanged.Load())}, err
}
