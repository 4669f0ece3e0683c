package chain

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"

	gitlab "gitlab.com/gitlab-org/api/client-go/v2"

	"github.com/opsctl/opsctl/internal/inputerr"
)

// GitLabConfig configures the GitLab API client.
type GitLabConfig struct {
	// URL is GitLab's address, https://gitlab.example.com (an /api/v4
	// suffix is added when missing).
	URL string
	// Token is a personal, group or project access token.
	Token string
	// Timeout bounds one HTTP attempt (default 30s).
	Timeout time.Duration
	// MaxRetries is how often a request is repeated after a 429, a 5xx or
	// a network error (default 5).
	MaxRetries int
	// MinBackoff and MaxBackoff bound the exponential backoff between
	// attempts (default 500ms and 30s).
	MinBackoff, MaxBackoff time.Duration
	// MaxRetryAfter is the longest Retry-After that is waited for (default
	// 2m); a longer one ends the retries with a temporary error.
	MaxRetryAfter time.Duration
	// Logger receives retries at warn level and the library's chatter at
	// debug level. Tokens are never logged: they travel in a header.
	Logger *slog.Logger
	// Resolver looks up GitLab's host (default: the system's).
	Resolver *net.Resolver
}

// GitLab is the one wrapper through which opsctl calls the GitLab API. It
// owns the retry policy: 429 (honouring Retry-After), 5xx except 501, and
// network errors and timeouts are retried with capped exponential backoff
// and jitter, for methods that may be repeated safely (a POST only when it
// cannot have reached GitLab, or on 429, which GitLab answers before acting).
type GitLab struct {
	api *gitlab.Client
	cfg GitLabConfig
	log *slog.Logger

	requests atomic.Int64
	retries  atomic.Int64
	failures atomic.Int64
	// reached is set once GitLab answered; unresolved while its host does
	// not resolve after that, so that a receiver says so once, not at
	// every call (a command that never reached GitLab says it in its
	// error).
	reached, unresolved atomic.Bool
}

// NewGitLab returns a client for cfg.
func NewGitLab(cfg GitLabConfig) (*GitLab, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, inputerr.New("GitLabConfig.URL", strconv.Quote(cfg.URL), "expected an http(s) URL like https://gitlab.example.com")
	}
	if cfg.Token == "" {
		return nil, inputerr.New("GitLabConfig.Token", "", "empty, expected a GitLab access token")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	if cfg.MaxRetries < 0 {
		cfg.MaxRetries = 0
	} else if cfg.MaxRetries == 0 {
		cfg.MaxRetries = 5
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = 500 * time.Millisecond
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 30 * time.Second
	}
	if cfg.MaxRetryAfter <= 0 {
		cfg.MaxRetryAfter = 2 * time.Minute
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	g := &GitLab{cfg: cfg, log: cfg.Logger}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.MaxIdleConnsPerHost = 64
	if cfg.Resolver != nil {
		dialer := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second, Resolver: cfg.Resolver}
		transport.DialContext = dialer.DialContext
	}
	g.api, err = gitlab.NewClient(cfg.Token,
		gitlab.WithBaseURL(cfg.URL),
		gitlab.WithHTTPClient(&http.Client{Timeout: cfg.Timeout, Transport: transport}),
		gitlab.WithCustomRetry(g.checkRetry),
		gitlab.WithCustomBackoff(g.backoff),
		gitlab.WithCustomRetryMax(cfg.MaxRetries),
		gitlab.WithCustomRetryWaitMinMax(cfg.MinBackoff, cfg.MaxBackoff),
		gitlab.WithCustomLeveledLogger(debugLogger{cfg.Logger}),
		gitlab.WithURLWarningLogger(slog.New(slog.DiscardHandler)),
		gitlab.WithUserAgent("opsctl-chain"),
	)
	if err != nil {
		return nil, &inputerr.Error{Name: "GitLabConfig.URL", Value: strconv.Quote(cfg.URL), Problem: err.Error(), Err: err}
	}
	return g, nil
}

// Host is the host[:port] of GitLab's URL.
func (g *GitLab) Host() string {
	u, _ := url.Parse(g.cfg.URL)
	return u.Host
}

func (g *GitLab) hostname() string {
	u, _ := url.Parse(g.cfg.URL)
	return u.Hostname()
}

// Stats counts HTTP requests, retries among them, and calls that failed.
func (g *GitLab) Stats() (requests, retries, failures int64) {
	return g.requests.Load(), g.retries.Load(), g.failures.Load()
}

// APIError is a GitLab API call that failed with an HTTP status, after the
// retries the status allows.
type APIError struct {
	Op      string // what was asked, e.g. "list projects of group g"
	Status  int
	Message string // GitLab's message, when it sent one
	Hint    string // what a person can do about it
	// RetryAfter is GitLab's Retry-After of a 429 or 503 (0: none): a
	// later attempt waits at least that long.
	RetryAfter time.Duration
}

func (e *APIError) Error() string {
	s := fmt.Sprintf("%s: GitLab answered %d %s", e.Op, e.Status, http.StatusText(e.Status))
	if e.Message != "" && e.Message != fmt.Sprintf("%d %s", e.Status, http.StatusText(e.Status)) {
		s += " (" + e.Message + ")"
	}
	if e.Hint != "" {
		s += "; " + e.Hint
	}
	return s
}

// Temporary reports whether a later attempt may succeed (429 and 5xx).
func (e *APIError) Temporary() bool { return e.Status == http.StatusTooManyRequests || e.Status >= 500 }

// HostNotFoundError: GitLab's host name does not resolve (NXDOMAIN, or a
// name without addresses). That is a wrong URL or a missing DNS entry,
// which retrying does not cure, unlike a DNS server that fails or does not
// answer (those are network errors, retried).
type HostNotFoundError struct {
	Op   string // what was asked
	Host string // GitLab's host name
}

func (e *HostNotFoundError) Error() string {
	return fmt.Sprintf("%s: GitLab host %s does not resolve (no such host); check GitLabConfig.URL", e.Op, e.Host)
}

// Temporary is false: the name will not resolve by itself.
func (e *HostNotFoundError) Temporary() bool { return false }

// networkError is a call that did not get an HTTP answer.
type networkError struct {
	op  string
	err error
}

// Error names the operation and what failed, without the URL: the
// operation says what was asked, and a URL with its query made lines of
// 300 characters.
func (e *networkError) Error() string {
	return fmt.Sprintf("%s: GitLab not reached: %s", e.op, networkCause(e.err))
}
func (e *networkError) Unwrap() error   { return e.err }
func (e *networkError) Temporary() bool { return true }

// apiError turns an error of the client library into one line for people.
func (g *GitLab) apiError(ctx context.Context, op, scopeHint string, resp *gitlab.Response, err error) error {
	g.failures.Add(1)
	if ctxErr := ctx.Err(); ctxErr != nil {
		return fmt.Errorf("%s: %w", op, ctxErr)
	}
	var er *gitlab.ErrorResponse
	if errors.As(err, &er) {
		status := er.StatusCode
		if status == 0 && resp != nil {
			status = resp.StatusCode
		}
		apiErr := &APIError{Op: op, Status: status, Message: gitlabMessage(er)}
		if resp != nil && resp.Response != nil && (status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable) {
			apiErr.RetryAfter, _ = retryAfter(resp.Response)
		}
		switch status {
		case http.StatusUnauthorized:
			// In the admin's words, not GitLabConfig's: a pipeline that
			// could not be created keeps this error as its step's reason,
			// which the receiver shows long after (GET /runs, chain status).
			apiErr.Hint = "check the token of --token-file or GITLAB_TOKEN (expired or revoked?)"
		case http.StatusForbidden:
			apiErr.Hint = scopeHint
		case http.StatusTooManyRequests:
			apiErr.Hint = "rate limited; try again later"
		}
		if status >= 500 {
			apiErr.Hint = fmt.Sprintf("gave up after %d attempts; try again later", g.cfg.MaxRetries+1)
			if er.Response != nil && er.Response.Request != nil && !repeatable(er.Response.Request.Method) {
				apiErr.Hint = "not repeated, as GitLab may have acted on it; try again later"
			}
		}
		return apiErr
	}
	if hostNotFound(err) {
		if !g.unresolved.Swap(true) && g.reached.Load() {
			g.log.Error("GitLab host " + g.hostname() + " stopped resolving (no such host); GitLab calls fail until it resolves again")
		}
		return &HostNotFoundError{Op: op, Host: g.hostname()}
	}
	var urlErr *url.Error
	var netErr net.Error
	if errors.As(err, &urlErr) || errors.As(err, &netErr) {
		// url.Error names the URL, which holds no secret: the token
		// travels in the PRIVATE-TOKEN header.
		return &networkError{op: op, err: err}
	}
	return fmt.Errorf("%s: %w", op, err)
}

// gitlabMessage is GitLab's own words from an error body: {"message":
// "..."} or {"error": "...", "error_description": "..."}.
func gitlabMessage(er *gitlab.ErrorResponse) string {
	var body struct {
		Message     any    `json:"message"`
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	if json.Unmarshal(er.Body, &body) != nil {
		return visible(strings.TrimSpace(er.Message))
	}
	var parts []string
	if m, ok := body.Message.(string); ok && m != "" {
		parts = append(parts, m)
	} else if body.Message != nil {
		parts = append(parts, er.Message)
	}
	for _, p := range []string{body.Error, body.Description} {
		if p != "" {
			parts = append(parts, p)
		}
	}
	msg := strings.Join(parts, ": ")
	if len(msg) > 300 {
		msg = msg[:300] + "..."
	}
	return visible(msg)
}

// visible writes the characters of GitLab's message that a terminal would
// act on (escape sequences, other control characters, bidirectional
// overrides) and bytes that are not UTF-8 as Go escapes (\x1b, \u202e):
// the message quotes what the project's owner wrote (.gitlab-ci.yml) and
// ends up on the admin's terminal, in `chain status` and in errors.
func visible(s string) string {
	if !strings.ContainsFunc(s, func(r rune) bool { return r == utf8.RuneError || (r != ' ' && !unicode.IsGraphic(r)) }) {
		return s
	}
	var b strings.Builder
	for i, w := 0, 0; i < len(s); i += w {
		r, width := utf8.DecodeRuneInString(s[i:])
		w = width
		switch {
		case r == utf8.RuneError && width == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case r == ' ' || (r != utf8.RuneError && unicode.IsGraphic(r)):
			b.WriteRune(r)
		default:
			q := strconv.QuoteRuneToASCII(r)
			b.WriteString(q[1 : len(q)-1])
		}
	}
	return b.String()
}

const (
	readScopeHint  = "the token needs the read_api scope and at least Reporter access"
	hooksScopeHint = "the token needs the api scope and the Maintainer role on the project"
)

// GroupProjects lists every non-archived project of group and its
// subgroups (not projects shared with the group), following pagination.
func (g *GitLab) GroupProjects(ctx context.Context, group string) ([]ProjectRef, error) {
	op := fmt.Sprintf("list projects of group %s", group)
	opt := &gitlab.ListGroupProjectsOptions{
		ListOptions:      gitlab.ListOptions{PerPage: 100, Page: 1},
		IncludeSubGroups: gitlab.Ptr(true),
		Archived:         gitlab.Ptr(false),
		WithShared:       gitlab.Ptr(false),
		OrderBy:          gitlab.Ptr("id"),
		Sort:             gitlab.Ptr("asc"),
	}
	var refs []ProjectRef
	for {
		projects, resp, err := g.api.Groups.ListGroupProjects(group, opt, g.call(ctx))
		g.requests.Add(1)
		if err != nil {
			if errors.Is(err, gitlab.ErrNotFound) {
				g.failures.Add(1)
				return nil, &APIError{Op: op, Status: http.StatusNotFound, Hint: "no such group, or the token cannot see it"}
			}
			return nil, g.apiError(ctx, op, readScopeHint, resp, err)
		}
		for _, p := range projects {
			if p.Archived || p.MarkedForDeletionOn != nil {
				continue
			}
			refs = append(refs, ProjectRef{Path: p.PathWithNamespace, ID: p.ID, DefaultBranch: p.DefaultBranch})
		}
		if resp.NextPage == 0 {
			return refs, nil
		}
		opt.Page = resp.NextPage
	}
}

// RawFile returns the file at path in ref of the project; an error matching
// fs.ErrNotExist when GitLab answers 404. Errors name the file and ref; the
// caller names the project.
func (g *GitLab) RawFile(ctx context.Context, project ProjectRef, path, ref string) ([]byte, error) {
	data, resp, err := g.api.RepositoryFiles.GetRawFile(project.ID, path, &gitlab.GetRawFileOptions{Ref: gitlab.Ptr(ref)}, g.call(ctx))
	g.requests.Add(1)
	if err != nil {
		if errors.Is(err, gitlab.ErrNotFound) {
			return nil, fs.ErrNotExist
		}
		return nil, g.apiError(ctx, fmt.Sprintf("read %s (ref %s)", path, ref), readScopeHint, resp, err)
	}
	return data, nil
}

// Hook is the part of a project webhook that opsctl manages.
type Hook struct {
	ID                    int64
	URL                   string
	PushEvents            bool
	PipelineEvents        bool
	EnableSSLVerification bool
	// Disabled: GitLab disabled the hook after failed deliveries
	// (alert_status disabled or temporarily_disabled); editing it does not
	// enable it again.
	Disabled bool
	// HasToken: GitLab says the hook has a secret token (token_present).
	HasToken bool
}

// HookSettings are the settings written to a hook.
type HookSettings struct {
	URL                   string
	PushEvents            bool
	PipelineEvents        bool
	EnableSSLVerification bool
	// Token is sent when not empty; GitLab never returns it.
	Token string
}

// ProjectHooks lists the webhooks of a project.
func (g *GitLab) ProjectHooks(ctx context.Context, project ProjectRef) ([]Hook, error) {
	op := fmt.Sprintf("list hooks of %s", project.Path)
	opt := &gitlab.ListProjectHooksOptions{ListOptions: gitlab.ListOptions{PerPage: 100, Page: 1}}
	var hooks []Hook
	for {
		list, resp, err := g.api.Projects.ListProjectHooks(project.ID, opt, g.call(ctx))
		g.requests.Add(1)
		if err != nil {
			return nil, g.apiError(ctx, op, hooksScopeHint, resp, err)
		}
		for _, h := range list {
			hooks = append(hooks, Hook{ID: h.ID, URL: h.URL, PushEvents: h.PushEvents, PipelineEvents: h.PipelineEvents, EnableSSLVerification: h.EnableSSLVerification,
				Disabled: h.AlertStatus == "disabled" || h.AlertStatus == "temporarily_disabled", HasToken: h.TokenPresent})
		}
		if resp.NextPage == 0 {
			return hooks, nil
		}
		opt.Page = resp.NextPage
	}
}

// AddProjectHook creates a webhook and returns its id.
func (g *GitLab) AddProjectHook(ctx context.Context, project ProjectRef, s HookSettings) (int64, error) {
	opt := &gitlab.AddProjectHookOptions{
		URL:                   gitlab.Ptr(s.URL),
		PushEvents:            gitlab.Ptr(s.PushEvents),
		PipelineEvents:        gitlab.Ptr(s.PipelineEvents),
		EnableSSLVerification: gitlab.Ptr(s.EnableSSLVerification),
	}
	if s.Token != "" {
		opt.Token = gitlab.Ptr(s.Token)
	}
	h, resp, err := g.api.Projects.AddProjectHook(project.ID, opt, g.call(ctx))
	g.requests.Add(1)
	if err != nil {
		return 0, g.apiError(ctx, fmt.Sprintf("add hook to %s", project.Path), hooksScopeHint, resp, err)
	}
	return h.ID, nil
}

// EditProjectHook rewrites the settings of a webhook.
func (g *GitLab) EditProjectHook(ctx context.Context, project ProjectRef, id int64, s HookSettings) error {
	opt := &gitlab.EditProjectHookOptions{
		URL:                   gitlab.Ptr(s.URL),
		PushEvents:            gitlab.Ptr(s.PushEvents),
		PipelineEvents:        gitlab.Ptr(s.PipelineEvents),
		EnableSSLVerification: gitlab.Ptr(s.EnableSSLVerification),
	}
	if s.Token != "" {
		opt.Token = gitlab.Ptr(s.Token)
	}
	_, resp, err := g.api.Projects.EditProjectHook(project.ID, id, opt, g.call(ctx))
	g.requests.Add(1)
	if err != nil {
		return g.apiError(ctx, fmt.Sprintf("edit hook %d of %s", id, project.Path), hooksScopeHint, resp, err)
	}
	return nil
}

// DeleteProjectHook removes a webhook.
func (g *GitLab) DeleteProjectHook(ctx context.Context, project ProjectRef, id int64) error {
	resp, err := g.api.Projects.DeleteProjectHook(project.ID, id, g.call(ctx))
	g.requests.Add(1)
	if err != nil {
		return g.apiError(ctx, fmt.Sprintf("delete hook %d of %s", id, project.Path), hooksScopeHint, resp, err)
	}
	return nil
}

// GitLabSource is the GitLab mode of Source: the non-archived projects of
// a group and its subgroups, files read from each default branch.
type GitLabSource struct {
	API   *GitLab
	Group string
}

// ListProjects lists the group.
func (s *GitLabSource) ListProjects(ctx context.Context) ([]ProjectRef, error) {
	return s.API.GroupProjects(ctx, s.Group)
}

// ReadFile reads name from the project's default branch. An empty
// repository (no default branch) has no files.
func (s *GitLabSource) ReadFile(ctx context.Context, p ProjectRef, name string) ([]byte, error) {
	if p.DefaultBranch == "" {
		return nil, fs.ErrNotExist
	}
	return s.API.RawFile(ctx, p, name, p.DefaultBranch)
}
