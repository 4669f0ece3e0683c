package chain

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	gitlab "gitlab.com/gitlab-org/api/client-go/v2"
)

// The pipeline calls of the trigger engine; *GitLab implements PipelineAPI.

const triggerScopeHint = "the token needs the api scope and at least Developer access to create pipelines"

func projectID(project string, t Target) any {
	if t.ProjectID != 0 {
		return t.ProjectID
	}
	return project
}

// permanent marks API errors that retrying cannot cure.
func permanent(err error) error {
	var apiErr *APIError
	if errors.As(err, &apiErr) && !apiErr.Temporary() {
		return &PermanentError{Err: err}
	}
	return err
}

// CreatePipeline creates a pipeline of project on t.Ref with RunVariable
// set to runID. A POST is not repeated after a 5xx or a time-out (GitLab
// may have created the pipeline): the engine looks for it first.
func (g *GitLab) CreatePipeline(ctx context.Context, project string, t Target, runID string, roots []string) (CreatedPipeline, error) {
	if t.Ref == "" {
		return CreatedPipeline{}, &PermanentError{Err: fmt.Errorf("create pipeline of %s: the project has no default branch (empty repository?)", project)}
	}
	vars := []*gitlab.PipelineVariableOptions{{
		Key: gitlab.Ptr(RunVariable), Value: gitlab.Ptr(runID), VariableType: gitlab.Ptr(gitlab.EnvVariableType),
	}}
	if len(roots) > 1 {
		vars = append(vars, &gitlab.PipelineVariableOptions{
			Key: gitlab.Ptr(RootsVariable), Value: gitlab.Ptr(strings.Join(roots, ",")), VariableType: gitlab.Ptr(gitlab.EnvVariableType),
		})
	}
	opt := &gitlab.CreatePipelineOptions{Ref: gitlab.Ptr(t.Ref), Variables: &vars}
	p, resp, err := g.api.Pipelines.CreatePipeline(projectID(project, t), opt, g.call(ctx))
	g.requests.Add(1)
	if err != nil {
		return CreatedPipeline{}, permanent(g.apiError(ctx, fmt.Sprintf("create pipeline of %s on %s", project, t.Ref), triggerScopeHint, resp, err))
	}
	return CreatedPipeline{ID: p.ID, WebURL: PipelinePageURL(p.WebURL)}, nil
}

// FindRunPipeline looks among the pipelines of project on t.Ref created
// since since for one carrying RunVariable=runID.
func (g *GitLab) FindRunPipeline(ctx context.Context, project string, t Target, runID string, since time.Time) (int64, bool, error) {
	op := fmt.Sprintf("list pipelines of %s", project)
	opt := &gitlab.ListProjectPipelinesOptions{
		ListOptions:  gitlab.ListOptions{PerPage: 100, Page: 1},
		Ref:          gitlab.Ptr(t.Ref),
		CreatedAfter: gitlab.Ptr(since),
		OrderBy:      gitlab.Ptr("id"),
		Sort:         gitlab.Ptr("asc"),
	}
	for {
		pipelines, resp, err := g.api.Pipelines.ListProjectPipelines(projectID(project, t), opt, g.call(ctx))
		g.requests.Add(1)
		if err != nil {
			return 0, false, permanent(g.apiError(ctx, op, triggerScopeHint, resp, err))
		}
		for _, p := range pipelines {
			vars, resp, err := g.api.Pipelines.GetPipelineVariables(projectID(project, t), p.ID, g.call(ctx))
			g.requests.Add(1)
			if err != nil {
				return 0, false, permanent(g.apiError(ctx, fmt.Sprintf("get variables of pipeline %d of %s", p.ID, project), triggerScopeHint, resp, err))
			}
			for _, v := range vars {
				if v.Key == RunVariable && v.Value == runID {
					return p.ID, true, nil
				}
			}
		}
		if resp.NextPage == 0 {
			return 0, false, nil
		}
		opt.Page = resp.NextPage
	}
}

// PipelineStatus returns the status of one pipeline.
func (g *GitLab) PipelineStatus(ctx context.Context, project string, t Target, pipelineID int64) (string, error) {
	p, resp, err := g.api.Pipelines.GetPipeline(projectID(project, t), pipelineID, g.call(ctx))
	g.requests.Add(1)
	if err != nil {
		return "", permanent(g.apiError(ctx, fmt.Sprintf("get pipeline %d of %s", pipelineID, project), triggerScopeHint, resp, err))
	}
	return p.Status, nil
}
