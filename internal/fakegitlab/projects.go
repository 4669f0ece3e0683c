package fakegitlab

import (
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Group is a GitLab group; subgroups have a parent.
type Group struct {
	ID       int64
	FullPath string
	Parent   *Group
}

// Project is a GitLab project.
type Project struct {
	ID            int64
	FullPath      string
	Namespace     *Group
	DefaultBranch string // "" for an empty repository
	Archived      bool
	CreatedAt     time.Time
	// Refs maps a branch to its files (path -> content).
	Refs  map[string]map[string]string
	Hooks []*Hook
	// SharedWith are the groups the project is shared with (Share
	// project with group): GitLab lists it among their projects unless
	// with_shared=false.
	SharedWith []*Group
}

// ProjectSpec describes a project to add.
type ProjectSpec struct {
	Path          string // full path, group/sub/name; groups are created
	DefaultBranch string // default "main"
	Empty         bool   // an empty repository: no default branch, no files
	Archived      bool
	Files         map[string]string // files of the default branch
}

// AddProject creates a project (and its groups) and returns its id.
func (s *Server) AddProject(spec ProjectSpec) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := strings.LastIndexByte(spec.Path, '/')
	if i <= 0 {
		panic("fakegitlab: a project path needs a group: " + spec.Path)
	}
	group := s.ensureGroupLocked(spec.Path[:i])
	s.nextID++
	p := &Project{
		ID:        s.nextID,
		FullPath:  spec.Path,
		Namespace: group,
		Archived:  spec.Archived,
		CreatedAt: time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(s.nextID) * time.Minute),
		Refs:      map[string]map[string]string{},
	}
	if !spec.Empty {
		p.DefaultBranch = spec.DefaultBranch
		if p.DefaultBranch == "" {
			p.DefaultBranch = "main"
		}
		files := map[string]string{}
		for k, v := range spec.Files {
			files[k] = v
		}
		p.Refs[p.DefaultBranch] = files
	}
	s.projects[p.ID] = p
	return p.ID
}

// AddGroup creates a group and its parents, and returns its id.
func (s *Server) AddGroup(fullPath string) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ensureGroupLocked(fullPath).ID
}

func (s *Server) ensureGroupLocked(fullPath string) *Group {
	for _, g := range s.groups {
		if strings.EqualFold(g.FullPath, fullPath) {
			return g
		}
	}
	var parent *Group
	if i := strings.LastIndexByte(fullPath, '/'); i > 0 {
		parent = s.ensureGroupLocked(fullPath[:i])
	}
	s.nextID++
	g := &Group{ID: s.nextID, FullPath: fullPath, Parent: parent}
	s.groups[g.ID] = g
	return g
}

// SetFile writes a file on a branch of a project (creating the branch).
func (s *Server) SetFile(projectPath, branch, name, content string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.projectLocked(projectPath)
	if p.Refs[branch] == nil {
		p.Refs[branch] = map[string]string{}
	}
	p.Refs[branch][name] = content
}

// ShareProject shares a project with a group (creating the group).
func (s *Server) ShareProject(projectPath, groupPath string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.projectLocked(projectPath)
	p.SharedWith = append(p.SharedWith, s.ensureGroupLocked(groupPath))
}

// SetArchived archives or unarchives a project.
func (s *Server) SetArchived(projectPath string, archived bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.projectLocked(projectPath).Archived = archived
}

func (s *Server) projectLocked(path string) *Project {
	for _, p := range s.projects {
		if strings.EqualFold(p.FullPath, path) {
			return p
		}
	}
	panic("fakegitlab: no project " + path)
}

// findProject resolves an id of the API: a number or a full path (the
// client sends it URL-encoded; routing has unescaped it).
func (s *Server) findProject(id string) *Project {
	return findByID(s.projects, id, func(p *Project) string { return p.FullPath })
}

func (s *Server) findGroup(id string) *Group {
	return findByID(s.groups, id, func(g *Group) string { return g.FullPath })
}

// findByID resolves an id of the API, a number or a full path (GitLab
// compares paths without regard to case), in all.
func findByID[T any](all map[int64]*T, id string, fullPath func(*T) string) *T {
	if n, err := strconv.ParseInt(id, 10, 64); err == nil {
		return all[n]
	}
	for _, x := range all {
		if strings.EqualFold(fullPath(x), id) {
			return x
		}
	}
	return nil
}

func (g *Group) within(ancestor *Group) bool {
	for ; g != nil; g = g.Parent {
		if g == ancestor {
			return true
		}
	}
	return false
}

func (g *Group) json() map[string]any {
	name := g.FullPath[strings.LastIndexByte(g.FullPath, '/')+1:]
	var parent any
	if g.Parent != nil {
		parent = g.Parent.ID
	}
	return map[string]any{"id": g.ID, "name": name, "path": name, "kind": "group", "full_path": g.FullPath, "parent_id": parent}
}

func (p *Project) json(baseURL string) map[string]any {
	name := p.FullPath[strings.LastIndexByte(p.FullPath, '/')+1:]
	var defaultBranch any
	if p.DefaultBranch != "" {
		defaultBranch = p.DefaultBranch
	}
	return map[string]any{
		"id":                     p.ID,
		"name":                   name,
		"path":                   name,
		"name_with_namespace":    strings.ReplaceAll(p.FullPath, "/", " / "),
		"path_with_namespace":    p.FullPath,
		"default_branch":         defaultBranch,
		"archived":               p.Archived,
		"empty_repo":             p.DefaultBranch == "",
		"visibility":             "private",
		"created_at":             p.CreatedAt.Format(time.RFC3339),
		"last_activity_at":       p.CreatedAt.Format(time.RFC3339),
		"web_url":                baseURL + "/" + p.FullPath,
		"http_url_to_repo":       baseURL + "/" + p.FullPath + ".git",
		"namespace":              p.Namespace.json(),
		"marked_for_deletion_on": nil,
	}
}

func (s *Server) registerProjectRoutes() {
	s.Handle("GET /api/v4/groups/{id}", s.getGroup)
	s.Handle("GET /api/v4/groups/{id}/projects", s.listGroupProjects)
	s.Handle("GET /api/v4/projects/{id}", s.getProject)
	s.Handle("GET /api/v4/projects/{id}/repository/files/{file}/raw", s.getRawFile)
}

func (s *Server) getGroup(w http.ResponseWriter, r *http.Request, params map[string]string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.findGroup(params["id"])
	if g == nil {
		writeMessage(w, http.StatusNotFound, "404 Group Not Found")
		return
	}
	writeJSON(w, http.StatusOK, g.json())
}

// listGroupProjects is GET /groups/:id/projects: include_subgroups,
// with_shared (default true: projects shared with the group are listed
// too), archived (true: only archived, false: only not archived, absent: all),
// order_by (id, name, path, created_at, last_activity_at; default
// created_at) and sort (asc, desc; default desc), paginated.
func (s *Server) listGroupProjects(w http.ResponseWriter, r *http.Request, params map[string]string) {
	q := r.URL.Query()
	s.mu.Lock()
	g := s.findGroup(params["id"])
	if g == nil {
		s.mu.Unlock()
		writeMessage(w, http.StatusNotFound, "404 Group Not Found")
		return
	}
	subgroups := q.Get("include_subgroups") == "true"
	var list []*Project
	for _, p := range s.projects {
		owned := p.Namespace == g || (subgroups && p.Namespace.within(g))
		shared := q.Get("with_shared") != "false" && slices.Contains(p.SharedWith, g)
		if !owned && !shared {
			continue
		}
		if a := q.Get("archived"); a != "" && (a == "true") != p.Archived {
			continue
		}
		list = append(list, p)
	}
	orderBy, sortDir := q.Get("order_by"), q.Get("sort")
	if orderBy == "" {
		orderBy = "created_at"
	}
	if sortDir == "" {
		sortDir = "desc"
	}
	if sortDir != "asc" && sortDir != "desc" {
		s.mu.Unlock()
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "sort does not have a valid value"})
		return
	}
	less := func(a, b *Project) bool { return a.ID < b.ID }
	switch orderBy {
	case "id", "created_at", "last_activity_at", "updated_at":
	case "name", "path":
		less = func(a, b *Project) bool {
			return a.FullPath[strings.LastIndexByte(a.FullPath, '/')+1:] < b.FullPath[strings.LastIndexByte(b.FullPath, '/')+1:]
		}
	default:
		s.mu.Unlock()
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "order_by does not have a valid value"})
		return
	}
	sort.SliceStable(list, func(i, j int) bool {
		if sortDir == "asc" {
			return less(list[i], list[j])
		}
		return less(list[j], list[i])
	})
	items := make([]map[string]any, len(list))
	for i, p := range list {
		items[i] = p.json(s.srv.URL)
	}
	s.mu.Unlock()
	paginate(w, r, items)
}

func (s *Server) getProject(w http.ResponseWriter, r *http.Request, params map[string]string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.findProject(params["id"])
	if p == nil {
		writeMessage(w, http.StatusNotFound, "404 Project Not Found")
		return
	}
	writeJSON(w, http.StatusOK, p.json(s.srv.URL))
}

// getRawFile is GET /projects/:id/repository/files/:file_path/raw?ref=:
// the file's bytes; ref defaults to the default branch; 404 when the
// project, the ref or the file does not exist.
func (s *Server) getRawFile(w http.ResponseWriter, r *http.Request, params map[string]string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.findProject(params["id"])
	if p == nil {
		writeMessage(w, http.StatusNotFound, "404 Project Not Found")
		return
	}
	if level, _ := strconv.Atoi(params["_access_level"]); level < Reporter {
		writeMessage(w, http.StatusForbidden, "403 Forbidden")
		return
	}
	ref := r.URL.Query().Get("ref")
	if ref == "" {
		ref = p.DefaultBranch
	}
	files, ok := p.Refs[ref]
	if !ok {
		writeMessage(w, http.StatusNotFound, "404 Commit Not Found")
		return
	}
	content, ok := files[params["file"]]
	if !ok {
		writeMessage(w, http.StatusNotFound, "404 File Not Found")
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Gitlab-File-Name", params["file"][strings.LastIndexByte(params["file"], '/')+1:])
	h.Set("X-Gitlab-File-Path", params["file"])
	h.Set("X-Gitlab-Ref", ref)
	h.Set("X-Gitlab-Size", strconv.Itoa(len(content)))
	w.WriteHeader(http.StatusOK)
	fmt.Fprint(w, content)
}
