// Package fakegitlab is an in-process GitLab REST API (v4) for tests: the
// part opsctl uses, written after GitLab's API documentation, served by
// net/http/httptest and driven in tests by the real client library.
//
// It keeps groups, projects with their files on the default branch, and
// project webhooks; authenticates with PRIVATE-TOKEN (or a Bearer token)
// and per-token scopes; paginates with GitLab's headers; and records every
// call. Faults (a status, a Retry-After, a delay) and a latency can be
// injected per route to test retries and concurrency.
//
// Other features extend it with Handle (a route of their own) and the
// exported state accessors.
package fakegitlab

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Access levels of GitLab's API.
const (
	Reporter   = 20
	Developer  = 30
	Maintainer = 40
	Owner      = 50
)

// Token is an access token the server accepts.
type Token struct {
	// Scopes: "api" allows everything, "read_api" only GET.
	Scopes []string
	// AccessLevel on every project (default Owner).
	AccessLevel int
}

// Call is one request the server received.
type Call struct {
	Time   time.Time
	Method string
	// Path is the request path with each segment unescaped, so a project
	// id "g%2Fapp" reads "g/app" and a file "a%2Fb" reads "a/b".
	Path string
	// EscapedPath is the path as sent.
	EscapedPath string
	Query       url.Values
	Body        []byte
	Status      int
	// Authenticated is true when a known token was sent. The token itself
	// is not recorded.
	Authenticated bool
}

// Fault makes matching requests fail (or slow down) before they reach
// their handler.
type Fault struct {
	Method string // "" matches every method
	// Path is matched against Call.Path: a prefix, or with a leading "~"
	// a substring.
	Path string
	// Status to answer with; 0 lets the request through after Delay.
	Status int
	// RetryAfter, when set, is sent as the Retry-After header.
	RetryAfter string
	// Body of the answer (default {"message":"<status text>"}).
	Body string
	// Delay before answering; a delay longer than the client's timeout
	// is a time-out.
	Delay time.Duration
	// Times is how many requests the fault affects; 0 is every request.
	Times int

	hits int
}

// HandlerFunc serves a route; params holds the unescaped {name} segments.
type HandlerFunc func(w http.ResponseWriter, r *http.Request, params map[string]string)

type route struct {
	method   string
	segments []string
	handler  HandlerFunc
}

// Server is the fake GitLab.
type Server struct {
	srv *httptest.Server

	mu       sync.Mutex
	tokens   map[string]Token
	groups   map[int64]*Group
	projects map[int64]*Project
	nextID   int64
	calls    []Call
	faults   []*Fault
	latency  time.Duration
	routes   []route

	inFlight, maxInFlight int
}

// New starts a fake GitLab; Close stops it.
func New() *Server {
	s := &Server{
		tokens:   map[string]Token{},
		groups:   map[int64]*Group{},
		projects: map[int64]*Project{},
	}
	s.registerProjectRoutes()
	s.registerHookRoutes()
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	return s
}

// URL is the server's root, to be given as --gitlab-url (the client adds
// /api/v4).
func (s *Server) URL() string { return s.srv.URL }

// Close stops the server and waits for running requests.
func (s *Server) Close() { s.srv.Close() }

// AddToken makes token valid with the given scopes and Owner access.
func (s *Server) AddToken(token string, scopes ...string) {
	s.AddTokenWithAccess(token, Owner, scopes...)
}

// AddTokenWithAccess makes token valid with a given access level.
func (s *Server) AddTokenWithAccess(token string, level int, scopes ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tokens[token] = Token{Scopes: scopes, AccessLevel: level}
}

// SetLatency delays every request by d (0 turns it off).
func (s *Server) SetLatency(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.latency = d
}

// InjectFault adds a fault; faults are checked in the order added.
func (s *Server) InjectFault(f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append(s.faults, &f)
}

// ClearFaults removes every fault.
func (s *Server) ClearFaults() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = nil
}

// Calls returns a copy of the call log.
func (s *Server) Calls() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.calls)
}

// ResetCalls empties the call log.
func (s *Server) ResetCalls() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = nil
	s.maxInFlight = s.inFlight
}

// CountCalls counts the calls with method ("" for any) whose Path starts
// with prefix.
func (s *Server) CountCalls(method, prefix string) int {
	n := 0
	for _, c := range s.Calls() {
		if (method == "" || c.Method == method) && strings.HasPrefix(c.Path, prefix) {
			n++
		}
	}
	return n
}

// Handle adds a route. pattern is "METHOD /api/v4/path/{param}/..."; a
// {param} matches one escaped segment. Routes added later win over
// earlier ones, so a test can replace a built-in route.
func (s *Server) Handle(pattern string, h HandlerFunc) {
	method, path, ok := strings.Cut(pattern, " ")
	if !ok {
		panic("fakegitlab: pattern must be \"METHOD /path\": " + pattern)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.routes = append([]route{{method: method, segments: strings.Split(strings.Trim(path, "/"), "/"), handler: h}}, s.routes...)
}

// statusRecorder remembers the status written.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(status int) {
	if r.status == 0 {
		r.status = status
	}
	r.ResponseWriter.WriteHeader(status)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

// MaxInFlight is the largest number of requests served at the same time
// since the server started or ResetCalls.
func (s *Server) MaxInFlight() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.maxInFlight
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.inFlight++
	s.maxInFlight = max(s.maxInFlight, s.inFlight)
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.inFlight--
		s.mu.Unlock()
	}()
	body, _ := io.ReadAll(io.LimitReader(r.Body, 10<<20))
	r.Body = io.NopCloser(strings.NewReader(string(body)))
	escaped := r.URL.EscapedPath()
	segments := strings.Split(strings.Trim(escaped, "/"), "/")
	unescaped := make([]string, len(segments))
	for i, seg := range segments {
		if u, err := url.PathUnescape(seg); err == nil {
			unescaped[i] = u
		} else {
			unescaped[i] = seg
		}
	}
	call := Call{Time: time.Now(), Method: r.Method, Path: "/" + strings.Join(unescaped, "/"), EscapedPath: escaped, Query: r.URL.Query(), Body: body}
	rec := &statusRecorder{ResponseWriter: w}
	defer func() {
		call.Status = rec.status
		if call.Status == 0 {
			call.Status = http.StatusOK
		}
		s.mu.Lock()
		s.calls = append(s.calls, call)
		s.mu.Unlock()
	}()

	s.mu.Lock()
	latency := s.latency
	var fault *Fault
	for _, f := range s.faults {
		if f.matches(r.Method, call.Path) {
			f.hits++
			fault = f
			break
		}
	}
	s.mu.Unlock()
	if latency > 0 {
		if !sleep(r, latency) {
			return
		}
	}
	if fault != nil {
		if fault.Delay > 0 && !sleep(r, fault.Delay) {
			return
		}
		if fault.Status != 0 {
			if fault.RetryAfter != "" {
				rec.Header().Set("Retry-After", fault.RetryAfter)
			}
			if fault.Body != "" {
				rec.Header().Set("Content-Type", "application/json")
				rec.WriteHeader(fault.Status)
				io.WriteString(rec, fault.Body)
			} else {
				writeMessage(rec, fault.Status, fmt.Sprintf("%d %s", fault.Status, http.StatusText(fault.Status)))
			}
			return
		}
	}

	token, known := s.authenticate(r)
	call.Authenticated = known
	if !known {
		writeMessage(rec, http.StatusUnauthorized, "401 Unauthorized")
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead && !slices.Contains(token.Scopes, "api") {
		writeJSON(rec, http.StatusForbidden, map[string]string{
			"error":             "insufficient_scope",
			"error_description": "The request requires higher privileges than provided by the access token.",
			"scope":             "api",
		})
		return
	}
	if !slices.Contains(token.Scopes, "api") && !slices.Contains(token.Scopes, "read_api") {
		writeJSON(rec, http.StatusForbidden, map[string]string{"error": "insufficient_scope", "scope": "api read_api"})
		return
	}

	s.mu.Lock()
	routes := s.routes
	s.mu.Unlock()
	for _, rt := range routes {
		if params, ok := rt.match(r.Method, unescaped); ok {
			params["_access_level"] = strconv.Itoa(token.AccessLevel)
			rt.handler(rec, r, params)
			return
		}
	}
	writeMessage(rec, http.StatusNotFound, "404 Not Found")
}

func (f *Fault) matches(method, path string) bool {
	if f.Times > 0 && f.hits >= f.Times {
		return false
	}
	if f.Method != "" && f.Method != method {
		return false
	}
	if sub, ok := strings.CutPrefix(f.Path, "~"); ok {
		return strings.Contains(path, sub)
	}
	return strings.HasPrefix(path, f.Path)
}

func sleep(r *http.Request, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-r.Context().Done():
		return false
	}
}

func (s *Server) authenticate(r *http.Request) (Token, bool) {
	token := r.Header.Get("PRIVATE-TOKEN")
	if token == "" {
		if v, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
			token = v
		}
	}
	if token == "" {
		return Token{}, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.tokens[token]
	return t, ok
}

func (rt route) match(method string, segments []string) (map[string]string, bool) {
	if rt.method != method || len(rt.segments) != len(segments) {
		return nil, false
	}
	params := map[string]string{}
	for i, seg := range rt.segments {
		if strings.HasPrefix(seg, "{") && strings.HasSuffix(seg, "}") {
			params[seg[1:len(seg)-1]] = segments[i]
			continue
		}
		if seg != segments[i] {
			return nil, false
		}
	}
	return params, true
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// writeMessage answers the way GitLab answers errors: {"message": "..."}.
func writeMessage(w http.ResponseWriter, status int, message string) {
	writeJSON(w, status, map[string]string{"message": message})
}

// paginate answers a list the way GitLab's offset pagination does: page
// (default 1) and per_page (default 20, at most 100) select the items;
// X-Page, X-Per-Page, X-Total, X-Total-Pages, X-Next-Page, X-Prev-Page and
// Link describe the pages.
func paginate[T any](w http.ResponseWriter, r *http.Request, items []T) {
	q := r.URL.Query()
	perPage, err := strconv.Atoi(q.Get("per_page"))
	if err != nil || perPage < 1 {
		perPage = 20
	}
	perPage = min(perPage, 100)
	page, err := strconv.Atoi(q.Get("page"))
	if err != nil || page < 1 {
		page = 1
	}
	total := len(items)
	totalPages := max((total+perPage-1)/perPage, 1)
	start := min((page-1)*perPage, total)
	end := min(start+perPage, total)
	h := w.Header()
	h.Set("X-Page", strconv.Itoa(page))
	h.Set("X-Per-Page", strconv.Itoa(perPage))
	h.Set("X-Total", strconv.Itoa(total))
	h.Set("X-Total-Pages", strconv.Itoa(totalPages))
	h.Set("X-Next-Page", "")
	h.Set("X-Prev-Page", "")
	link := func(p int, rel string) string {
		u := *r.URL
		u.Scheme, u.Host = "http", r.Host
		v := u.Query()
		v.Set("page", strconv.Itoa(p))
		v.Set("per_page", strconv.Itoa(perPage))
		u.RawQuery = v.Encode()
		return fmt.Sprintf("<%s>; rel=%q", u.String(), rel)
	}
	var links []string
	if page > 1 {
		h.Set("X-Prev-Page", strconv.Itoa(min(page-1, totalPages)))
		links = append(links, link(min(page-1, totalPages), "prev"))
	}
	if page < totalPages {
		h.Set("X-Next-Page", strconv.Itoa(page+1))
		links = append(links, link(page+1, "next"))
	}
	links = append(links, link(1, "first"), link(totalPages, "last"))
	h.Set("Link", strings.Join(links, ", "))
	writeJSON(w, http.StatusOK, items[start:end])
}
