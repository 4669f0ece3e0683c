package fakegitlab

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"time"
)

// Pipeline is a CI pipeline of a project.
type Pipeline struct {
	ID        int64
	IID       int64
	ProjectID int64
	Project   string
	Ref       string
	SHA       string
	Source    string // api, push, schedule, web, trigger, ...
	Status    string
	Variables []Variable
	CreatedAt time.Time
	UpdatedAt time.Time
}

// Variable is a pipeline variable.
type Variable struct {
	Key, Value, VariableType string
}

// Pipelines adds GitLab's pipeline API to a Server: create
// (POST /projects/:id/pipeline), list, get, and get variables; and, for the
// tests, pipelines changing status with the Pipeline Hook delivered to the
// project's webhooks the way GitLab sends it.
type Pipelines struct {
	s      *Server
	mu     sync.Mutex
	byID   map[int64]*Pipeline
	nextID int64
	client *http.Client
	// OnCreate, when set, is called (without locks held) after a pipeline
	// was created through the API.
	OnCreate func(p Pipeline)
}

// NewPipelines registers the pipeline routes on s.
func NewPipelines(s *Server) *Pipelines {
	pl := &Pipelines{s: s, byID: map[int64]*Pipeline{}, nextID: 5000, client: &http.Client{Timeout: 10 * time.Second}}
	s.Handle("POST /api/v4/projects/{id}/pipeline", pl.create)
	s.Handle("GET /api/v4/projects/{id}/pipelines", pl.list)
	s.Handle("GET /api/v4/projects/{id}/pipelines/{pid}", pl.get)
	s.Handle("GET /api/v4/projects/{id}/pipelines/{pid}/variables", pl.variables)
	return pl
}

func (pl *Pipelines) project(w http.ResponseWriter, id string) *Project {
	pl.s.mu.Lock()
	p := pl.s.findProject(id)
	pl.s.mu.Unlock()
	if p == nil {
		writeMessage(w, http.StatusNotFound, "404 Project Not Found")
	}
	return p
}

func (pl *Pipelines) newPipelineLocked(p *Project, ref, source string, vars []Variable) *Pipeline {
	pl.nextID++
	var sha [20]byte
	rand.Read(sha[:])
	now := time.Now().UTC()
	iid := int64(1)
	for _, other := range pl.byID {
		if other.ProjectID == p.ID {
			iid++
		}
	}
	pipe := &Pipeline{ID: pl.nextID, IID: iid, ProjectID: p.ID, Project: p.FullPath, Ref: ref, SHA: hex.EncodeToString(sha[:]),
		Source: source, Status: "created", Variables: vars, CreatedAt: now, UpdatedAt: now}
	pl.byID[pipe.ID] = pipe
	return pipe
}

// Start creates a pipeline as GitLab does for a push or a schedule (not
// through the API) and returns its id.
func (pl *Pipelines) Start(projectPath, ref, source string) int64 {
	pl.s.mu.Lock()
	p := pl.s.projectLocked(projectPath)
	pl.s.mu.Unlock()
	pl.mu.Lock()
	defer pl.mu.Unlock()
	return pl.newPipelineLocked(p, ref, source, nil).ID
}

// create is POST /projects/:id/pipeline: ref, and variables as
// [{key, value, variable_type}].
func (pl *Pipelines) create(w http.ResponseWriter, r *http.Request, params map[string]string) {
	p := pl.project(w, params["id"])
	if p == nil {
		return
	}
	if level, _ := strconv.Atoi(params["_access_level"]); level < Developer {
		writeMessage(w, http.StatusForbidden, "403 Forbidden")
		return
	}
	var body struct {
		Ref       string `json:"ref"`
		Variables []struct {
			Key          string `json:"key"`
			Value        string `json:"value"`
			VariableType string `json:"variable_type"`
		} `json:"variables"`
	}
	if err := json.Unmarshal(mustRead(r), &body); err != nil && r.URL.Query().Get("ref") == "" {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "ref is missing"})
		return
	}
	if body.Ref == "" {
		body.Ref = r.URL.Query().Get("ref")
	}
	if body.Ref == "" {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "ref is missing"})
		return
	}
	pl.s.mu.Lock()
	_, refExists := p.Refs[body.Ref]
	pl.s.mu.Unlock()
	if !refExists {
		writeJSON(w, http.StatusBadRequest, map[string]any{"message": map[string][]string{"base": {"Reference not found"}}})
		return
	}
	var vars []Variable
	for _, v := range body.Variables {
		if v.VariableType == "" {
			v.VariableType = "env_var"
		}
		vars = append(vars, Variable{Key: v.Key, Value: v.Value, VariableType: v.VariableType})
	}
	pl.mu.Lock()
	pipe := pl.newPipelineLocked(p, body.Ref, "api", vars)
	pipe.Status = "pending"
	created := *pipe
	pl.mu.Unlock()
	writeJSON(w, http.StatusCreated, pipelineJSON(&created, pl.s.URL()))
	if pl.OnCreate != nil {
		pl.OnCreate(created)
	}
}

func mustRead(r *http.Request) []byte {
	var buf bytes.Buffer
	buf.ReadFrom(r.Body)
	return buf.Bytes()
}

func pipelineInfoJSON(p *Pipeline, base string) map[string]any {
	return map[string]any{
		"id": p.ID, "iid": p.IID, "project_id": p.ProjectID, "status": p.Status, "source": p.Source,
		"ref": p.Ref, "sha": p.SHA, "name": nil,
		"web_url":    fmt.Sprintf("%s/%s/-/pipelines/%d", base, p.Project, p.ID),
		"created_at": p.CreatedAt.Format(time.RFC3339Nano), "updated_at": p.UpdatedAt.Format(time.RFC3339Nano),
	}
}

func pipelineJSON(p *Pipeline, base string) map[string]any {
	m := pipelineInfoJSON(p, base)
	m["before_sha"] = "0000000000000000000000000000000000000000"
	m["tag"] = false
	m["yaml_errors"] = nil
	m["user"] = map[string]any{"id": 1, "name": "Administrator", "username": "root", "state": "active"}
	m["started_at"], m["finished_at"], m["committed_at"] = nil, nil, nil
	m["duration"], m["queued_duration"] = nil, nil
	m["coverage"] = nil
	m["detailed_status"] = map[string]any{"icon": "status_" + p.Status, "text": p.Status, "label": p.Status, "group": p.Status}
	return m
}

// list is GET /projects/:id/pipelines with ref, status, source,
// created_after, order_by (id), sort, and pagination.
func (pl *Pipelines) list(w http.ResponseWriter, r *http.Request, params map[string]string) {
	p := pl.project(w, params["id"])
	if p == nil {
		return
	}
	q := r.URL.Query()
	var after time.Time
	if s := q.Get("created_after"); s != "" {
		t, err := time.Parse(time.RFC3339, s)
		if err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "created_after is invalid"})
			return
		}
		after = t
	}
	pl.mu.Lock()
	var items []map[string]any
	var pipes []*Pipeline
	for _, pipe := range pl.byID {
		if pipe.ProjectID != p.ID ||
			(q.Get("ref") != "" && pipe.Ref != q.Get("ref")) ||
			(q.Get("status") != "" && pipe.Status != q.Get("status")) ||
			(q.Get("source") != "" && pipe.Source != q.Get("source")) ||
			(!after.IsZero() && pipe.CreatedAt.Before(after)) {
			continue
		}
		pipes = append(pipes, pipe)
	}
	asc := q.Get("sort") == "asc"
	sort.Slice(pipes, func(i, j int) bool {
		if asc {
			return pipes[i].ID < pipes[j].ID
		}
		return pipes[i].ID > pipes[j].ID
	})
	for _, pipe := range pipes {
		items = append(items, pipelineInfoJSON(pipe, pl.s.URL()))
	}
	pl.mu.Unlock()
	if items == nil {
		items = []map[string]any{}
	}
	paginate(w, r, items)
}

func (pl *Pipelines) find(w http.ResponseWriter, params map[string]string) *Pipeline {
	p := pl.project(w, params["id"])
	if p == nil {
		return nil
	}
	id, _ := strconv.ParseInt(params["pid"], 10, 64)
	pl.mu.Lock()
	pipe := pl.byID[id]
	pl.mu.Unlock()
	if pipe == nil || pipe.ProjectID != p.ID {
		writeMessage(w, http.StatusNotFound, "404 Not found")
		return nil
	}
	return pipe
}

func (pl *Pipelines) get(w http.ResponseWriter, r *http.Request, params map[string]string) {
	if pipe := pl.find(w, params); pipe != nil {
		pl.mu.Lock()
		m := pipelineJSON(pipe, pl.s.URL())
		pl.mu.Unlock()
		writeJSON(w, http.StatusOK, m)
	}
}

func (pl *Pipelines) variables(w http.ResponseWriter, r *http.Request, params map[string]string) {
	if pipe := pl.find(w, params); pipe != nil {
		out := []map[string]any{}
		pl.mu.Lock()
		for _, v := range pipe.Variables {
			out = append(out, map[string]any{"key": v.Key, "value": v.Value, "variable_type": v.VariableType, "raw": false})
		}
		pl.mu.Unlock()
		writeJSON(w, http.StatusOK, out)
	}
}

// All returns copies of every pipeline, oldest first.
func (pl *Pipelines) All() []Pipeline {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	var out []Pipeline
	for _, p := range pl.byID {
		out = append(out, *p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Get returns a copy of a pipeline.
func (pl *Pipelines) Get(id int64) (Pipeline, bool) {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	p, ok := pl.byID[id]
	if !ok {
		return Pipeline{}, false
	}
	return *p, true
}

// SetStatus changes a pipeline's status and delivers the Pipeline Hook to
// every hook of its project with pipeline events on. It returns the HTTP
// status of each delivery (GitLab does not retry a failed one).
func (pl *Pipelines) SetStatus(id int64, status string) ([]int, error) {
	pl.mu.Lock()
	pipe, ok := pl.byID[id]
	if !ok {
		pl.mu.Unlock()
		return nil, fmt.Errorf("fakegitlab: no pipeline %d", id)
	}
	pipe.Status = status
	pipe.UpdatedAt = time.Now().UTC()
	snapshot := *pipe
	pl.mu.Unlock()

	pl.s.mu.Lock()
	project := pl.s.projectLocked(snapshot.Project)
	var hooks []Hook
	for _, h := range project.Hooks {
		if h.PipelineEvents {
			hooks = append(hooks, *h)
		}
	}
	payload, err := json.Marshal(pl.hookPayloadLocked(project, &snapshot))
	pl.s.mu.Unlock()
	if err != nil {
		return nil, err
	}
	var codes []int
	for _, h := range hooks {
		code, err := pl.deliver(h, payload)
		if err != nil {
			return codes, err
		}
		codes = append(codes, code)
	}
	return codes, nil
}

func (pl *Pipelines) deliver(h Hook, payload []byte) (int, error) {
	req, err := http.NewRequest(http.MethodPost, h.URL, bytes.NewReader(payload))
	if err != nil {
		return 0, err
	}
	var uuid [16]byte
	rand.Read(uuid[:])
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "GitLab/17.5.0")
	req.Header.Set("X-Gitlab-Event", "Pipeline Hook")
	req.Header.Set("X-Gitlab-Webhook-UUID", hex.EncodeToString(uuid[:]))
	req.Header.Set("X-Gitlab-Event-UUID", hex.EncodeToString(uuid[:]))
	req.Header.Set("X-Gitlab-Instance", pl.s.URL())
	if h.Token != "" {
		req.Header.Set("X-Gitlab-Token", h.Token)
	}
	resp, err := pl.client.Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// hookPayloadLocked is the Pipeline Hook body as GitLab documents it.
func (pl *Pipelines) hookPayloadLocked(p *Project, pipe *Pipeline) map[string]any {
	base := pl.s.URL()
	vars := []map[string]string{}
	for _, v := range pipe.Variables {
		vars = append(vars, map[string]string{"key": v.Key, "value": v.Value})
	}
	var finished any
	switch pipe.Status {
	case "success", "failed", "canceled", "skipped":
		finished = pipe.UpdatedAt.Format("2006-01-02 15:04:05 UTC")
	}
	name := p.FullPath[len(p.Namespace.FullPath)+1:]
	return map[string]any{
		"object_kind": "pipeline",
		"object_attributes": map[string]any{
			"id": pipe.ID, "iid": pipe.IID, "name": nil, "ref": pipe.Ref, "tag": false, "sha": pipe.SHA,
			"before_sha": "0000000000000000000000000000000000000000", "source": pipe.Source, "status": pipe.Status,
			"detailed_status": pipe.Status, "stages": []string{"build"},
			"created_at":  pipe.CreatedAt.Format("2006-01-02 15:04:05 UTC"),
			"finished_at": finished, "duration": nil, "queued_duration": nil,
			"variables": vars,
			"url":       fmt.Sprintf("%s/%s/-/pipelines/%d", base, p.FullPath, pipe.ID),
		},
		"merge_request": nil,
		"user":          map[string]any{"id": 1, "name": "Administrator", "username": "root", "avatar_url": "", "email": "[REDACTED]"},
		"project": map[string]any{
			"id": p.ID, "name": name, "description": "", "web_url": base + "/" + p.FullPath, "avatar_url": nil,
			"git_ssh_url": "git@fake:" + p.FullPath + ".git", "git_http_url": base + "/" + p.FullPath + ".git",
			"namespace": p.Namespace.FullPath, "visibility_level": 0, "path_with_namespace": p.FullPath,
			"default_branch": p.DefaultBranch, "ci_config_path": "",
		},
		"commit": map[string]any{
			"id": pipe.SHA, "message": "Rebuild\n", "title": "Rebuild", "timestamp": pipe.CreatedAt.Format(time.RFC3339),
			"url":    fmt.Sprintf("%s/%s/-/commit/%s", base, p.FullPath, pipe.SHA),
			"author": map[string]string{"name": "Administrator", "email": "admin@example.com"},
		},
		"source_pipeline": nil,
		"builds":          []any{},
	}
}
