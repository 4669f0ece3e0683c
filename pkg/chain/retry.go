package chain

import (
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	gitlab "gitlab.com/gitlab-org/api/client-go/v2"
)

// attemptsKey holds, in the context of one request, how many of its
// attempts have ended: checkRetry runs after each one, the last included,
// and only the attempts followed by another are retries.
type attemptsKey struct{}

// call is the request option of every API call: its context, with a count
// of its attempts. Each call builds its own, so each request (each page
// of a listing too) counts from zero.
func (g *GitLab) call(ctx context.Context) gitlab.RequestOptionFunc {
	return gitlab.WithContext(context.WithValue(ctx, attemptsKey{}, new(atomic.Int32)))
}

// checkRetry is the retry policy of every GitLab call (see GitLab).
func (g *GitLab) checkRetry(ctx context.Context, resp *http.Response, err error) (bool, error) {
	if ctxErr := ctx.Err(); ctxErr != nil {
		return false, ctxErr
	}
	lastAttempt := false
	if attempts, ok := ctx.Value(attemptsKey{}).(*atomic.Int32); ok {
		lastAttempt = int(attempts.Add(1)) > g.cfg.MaxRetries
	}
	if err != nil {
		if hostNotFound(err) {
			return false, nil // a wrong name: see HostNotFoundError
		}
		method, path := "", ""
		if resp != nil && resp.Request != nil {
			method = resp.Request.Method
		}
		var urlErr *url.Error
		if errors.As(err, &urlErr) {
			method = strings.ToUpper(urlErr.Op)
			if u, perr := url.Parse(urlErr.URL); perr == nil {
				path = u.Path
			}
		}
		if repeatable(method) || neverSent(err) {
			g.noteRetry(lastAttempt, networkCause(err), method, path)
			return true, nil
		}
		return false, nil
	}
	g.reached.Store(true)
	if g.unresolved.Swap(false) {
		g.log.Info("GitLab host " + g.hostname() + " resolves again")
	}
	switch {
	case resp.StatusCode == http.StatusTooManyRequests:
		if wait, ok := retryAfter(resp); ok && wait > g.cfg.MaxRetryAfter {
			return false, nil // longer than we are willing to wait
		}
	case resp.StatusCode >= 500 && resp.StatusCode != http.StatusNotImplemented:
		if !repeatable(resp.Request.Method) {
			return false, nil // GitLab may have acted on it
		}
	default:
		return false, nil
	}
	g.noteRetry(lastAttempt, resp.Status, resp.Request.Method, resp.Request.URL.Path)
	return true, nil
}

// noteRetry logs one short line per retry: the request without its query
// (which holds no secret but made lines of 300 characters) and why.
func (g *GitLab) noteRetry(lastAttempt bool, why, method, path string) {
	if lastAttempt {
		return // the caller's error says it gave up
	}
	g.retries.Add(1)
	g.log.Warn("GitLab API: retrying", "method", method, "path", path, "why", why)
}

// networkCause is what failed in a call without an HTTP answer, without
// the URL: "dial tcp 10.0.0.5:443: connect: connection refused".
func networkCause(err error) string {
	var urlErr *url.Error
	if errors.As(err, &urlErr) {
		err = urlErr.Err
	}
	return oneLine(err.Error())
}

// hostNotFound reports a name that does not resolve: NXDOMAIN, or a name
// without addresses. A DNS time-out or SERVFAIL is not that: the same name
// may resolve a moment later.
func hostNotFound(err error) bool {
	var dnsErr *net.DNSError
	return errors.As(err, &dnsErr) && dnsErr.IsNotFound
}

// repeatable methods cannot duplicate an effect when sent twice.
func repeatable(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodPut, http.MethodDelete, http.MethodOptions:
		return true
	}
	return false
}

// neverSent reports errors that happen before a request reaches the
// server: resolving the name or connecting.
func neverSent(err error) bool {
	var opErr *net.OpError
	if errors.As(err, &opErr) && opErr.Op == "dial" {
		return true
	}
	var dnsErr *net.DNSError
	return errors.As(err, &dnsErr)
}

// backoff waits what Retry-After asks (429 and 503), else
// min·2^attempt with full jitter, capped at max.
func (g *GitLab) backoff(lo, hi time.Duration, attempt int, resp *http.Response) time.Duration {
	if resp != nil && (resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable) {
		if wait, ok := retryAfter(resp); ok {
			return min(wait, g.cfg.MaxRetryAfter)
		}
	}
	return jitteredBackoff(lo, hi, attempt)
}

func jitteredBackoff(lo, hi time.Duration, attempt int) time.Duration {
	ceiling := hi
	if attempt < 30 {
		if d := lo << attempt; d > 0 && d < hi {
			ceiling = d
		}
	}
	// Half fixed, half random: never a zero wait, never a herd.
	return ceiling/2 + rand.N(ceiling/2+1)
}

// retryAfter reads the Retry-After header: seconds or an HTTP date.
func retryAfter(resp *http.Response) (time.Duration, bool) {
	v := strings.TrimSpace(resp.Header.Get("Retry-After"))
	if v == "" {
		return 0, false
	}
	if secs, err := strconv.Atoi(v); err == nil && secs >= 0 {
		return time.Duration(secs) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(time.Until(t), 0), true
	}
	return 0, false
}

// debugLogger puts the retry library's messages at debug level.
type debugLogger struct {
	l interface{ Debug(string, ...any) }
}

func (d debugLogger) Error(msg string, kv ...any) { d.l.Debug(msg, kv...) }
func (d debugLogger) Info(msg string, kv ...any)  { d.l.Debug(msg, kv...) }
func (d debugLogger) Debug(msg string, kv ...any) { d.l.Debug(msg, kv...) }
func (d debugLogger) Warn(msg string, kv ...any)  { d.l.Debug(msg, kv...) }
