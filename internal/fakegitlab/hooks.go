package fakegitlab

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Hook is a project webhook, token included (the API never returns it).
type Hook struct {
	ID                    int64
	URL                   string
	PushEvents            bool
	PipelineEvents        bool
	TagPushEvents         bool
	MergeRequestsEvents   bool
	JobEvents             bool
	EnableSSLVerification bool
	Token                 string
	// AlertStatus is "" (executable), "temporarily_disabled" or
	// "disabled": GitLab disables a hook whose deliveries keep failing,
	// and editing the hook does not enable it again.
	AlertStatus string
	CreatedAt   time.Time
}

// Hooks returns copies of the hooks of a project, tokens included.
func (s *Server) Hooks(projectPath string) []Hook {
	s.mu.Lock()
	defer s.mu.Unlock()
	var hooks []Hook
	for _, h := range s.projectLocked(projectPath).Hooks {
		hooks = append(hooks, *h)
	}
	return hooks
}

// AddHook installs a hook as if created earlier, and returns its id.
func (s *Server) AddHook(projectPath string, h Hook) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.projectLocked(projectPath)
	s.nextID++
	h.ID = s.nextID
	h.CreatedAt = time.Now().UTC()
	p.Hooks = append(p.Hooks, &h)
	return h.ID
}

func (h *Hook) json(projectID int64) map[string]any {
	return map[string]any{
		"id":                         h.ID,
		"url":                        h.URL,
		"name":                       "",
		"description":                "",
		"project_id":                 projectID,
		"push_events":                h.PushEvents,
		"push_events_branch_filter":  "",
		"issues_events":              false,
		"confidential_issues_events": false,
		"merge_requests_events":      h.MergeRequestsEvents,
		"tag_push_events":            h.TagPushEvents,
		"note_events":                false,
		"confidential_note_events":   false,
		"job_events":                 h.JobEvents,
		"pipeline_events":            h.PipelineEvents,
		"wiki_page_events":           false,
		"deployment_events":          false,
		"releases_events":            false,
		"enable_ssl_verification":    h.EnableSSLVerification,
		"alert_status":               h.alertStatus(),
		"token_present":              h.Token != "",
		"disabled_until":             nil,
		"created_at":                 h.CreatedAt.Format(time.RFC3339),
	}
}

func (h *Hook) alertStatus() string {
	if h.AlertStatus == "" {
		return "executable"
	}
	return h.AlertStatus
}

func (s *Server) registerHookRoutes() {
	s.Handle("GET /api/v4/projects/{id}/hooks", s.listHooks)
	s.Handle("GET /api/v4/projects/{id}/hooks/{hook_id}", s.getHook)
	s.Handle("POST /api/v4/projects/{id}/hooks", s.addHook)
	s.Handle("PUT /api/v4/projects/{id}/hooks/{hook_id}", s.editHook)
	s.Handle("DELETE /api/v4/projects/{id}/hooks/{hook_id}", s.deleteHook)
}

// hookProject finds the project of a hook route; managing hooks needs the
// Maintainer role.
func (s *Server) hookProject(w http.ResponseWriter, params map[string]string) *Project {
	p := s.findProject(params["id"])
	if p == nil {
		writeMessage(w, http.StatusNotFound, "404 Project Not Found")
		return nil
	}
	if level, _ := strconv.Atoi(params["_access_level"]); level < Maintainer {
		writeMessage(w, http.StatusForbidden, "403 Forbidden")
		return nil
	}
	return p
}

func (s *Server) findHook(w http.ResponseWriter, p *Project, id string) (int, *Hook) {
	n, _ := strconv.ParseInt(id, 10, 64)
	for i, h := range p.Hooks {
		if h.ID == n {
			return i, h
		}
	}
	writeMessage(w, http.StatusNotFound, "404 Not Found")
	return -1, nil
}

func (s *Server) listHooks(w http.ResponseWriter, r *http.Request, params map[string]string) {
	s.mu.Lock()
	p := s.hookProject(w, params)
	if p == nil {
		s.mu.Unlock()
		return
	}
	items := make([]map[string]any, len(p.Hooks))
	for i, h := range p.Hooks {
		items[i] = h.json(p.ID)
	}
	s.mu.Unlock()
	paginate(w, r, items)
}

func (s *Server) getHook(w http.ResponseWriter, r *http.Request, params map[string]string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.hookProject(w, params)
	if p == nil {
		return
	}
	if _, h := s.findHook(w, p, params["hook_id"]); h != nil {
		writeJSON(w, http.StatusOK, h.json(p.ID))
	}
}

// hookParams reads the attributes of a hook request: a JSON body (what
// the client library sends), a form body or the query string.
func hookParams(r *http.Request) (map[string]any, error) {
	params := map[string]any{}
	for k, v := range r.URL.Query() {
		params[k] = v[0]
	}
	ct := r.Header.Get("Content-Type")
	switch {
	case strings.HasPrefix(ct, "application/json"):
		if err := json.NewDecoder(r.Body).Decode(&params); err != nil {
			return nil, err
		}
	case strings.HasPrefix(ct, "application/x-www-form-urlencoded"):
		if err := r.ParseForm(); err != nil {
			return nil, err
		}
		for k, v := range r.PostForm {
			params[k] = v[0]
		}
	}
	return params, nil
}

// applyHookParams sets the attributes given; a malformed one is an error
// message as GitLab writes them.
func applyHookParams(h *Hook, params map[string]any) string {
	for name, field := range map[string]*bool{
		"push_events":             &h.PushEvents,
		"pipeline_events":         &h.PipelineEvents,
		"tag_push_events":         &h.TagPushEvents,
		"merge_requests_events":   &h.MergeRequestsEvents,
		"job_events":              &h.JobEvents,
		"enable_ssl_verification": &h.EnableSSLVerification,
	} {
		v, ok := params[name]
		if !ok {
			continue
		}
		switch v := v.(type) {
		case bool:
			*field = v
		case string:
			b, err := strconv.ParseBool(v)
			if err != nil {
				return name + " is invalid"
			}
			*field = b
		default:
			return name + " is invalid"
		}
	}
	if v, ok := params["url"]; ok {
		s, _ := v.(string)
		u, err := url.Parse(s)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return "url is blocked: Only allowed schemes are http, https"
		}
		h.URL = s
	}
	if v, ok := params["token"]; ok {
		s, _ := v.(string)
		h.Token = s
	}
	return ""
}

// addHook is POST /projects/:id/hooks. As in GitLab, push_events and
// enable_ssl_verification default to true, the other events to false.
func (s *Server) addHook(w http.ResponseWriter, r *http.Request, params map[string]string) {
	body, err := hookParams(r)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "body is not valid JSON"})
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.hookProject(w, params)
	if p == nil {
		return
	}
	if _, ok := body["url"]; !ok {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "url is missing"})
		return
	}
	h := &Hook{PushEvents: true, EnableSSLVerification: true, CreatedAt: time.Now().UTC()}
	if msg := applyHookParams(h, body); msg != "" {
		writeJSON(w, http.StatusUnprocessableEntity, map[string]string{"error": msg})
		return
	}
	s.nextID++
	h.ID = s.nextID
	p.Hooks = append(p.Hooks, h)
	writeJSON(w, http.StatusCreated, h.json(p.ID))
}

// editHook is PUT /projects/:id/hooks/:hook_id: the attributes given are
// changed, the others kept.
func (s *Server) editHook(w http.ResponseWriter, r *http.Request, params map[string]string) {
	body, err := hookParams(r)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "body is not valid JSON"})
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.hookProject(w, params)
	if p == nil {
		return
	}
	_, h := s.findHook(w, p, params["hook_id"])
	if h == nil {
		return
	}
	edited := *h
	if msg := applyHookParams(&edited, body); msg != "" {
		writeJSON(w, http.StatusUnprocessableEntity, map[string]string{"error": msg})
		return
	}
	*h = edited
	writeJSON(w, http.StatusOK, h.json(p.ID))
}

func (s *Server) deleteHook(w http.ResponseWriter, r *http.Request, params map[string]string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.hookProject(w, params)
	if p == nil {
		return
	}
	i, h := s.findHook(w, p, params["hook_id"])
	if h == nil {
		return
	}
	p.Hooks = append(p.Hooks[:i], p.Hooks[i+1:]...)
	w.WriteHeader(http.StatusNoContent)
}
