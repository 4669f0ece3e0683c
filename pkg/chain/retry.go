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
	"time"
)

// checkRetry is the retry policy of every GitLab call (see GitLab).
func (g *GitLab) checkRetry(ctx context.Context, resp *http.Response, err error) (bool, error) {
	if ctxErr := ctx.Err(); ctxErr != nil {
		return false, ctxErr
	}
	if err != nil {
		method := ""
		if resp != nil && resp.Request != nil {
			method = resp.Request.Method
		}
		var urlErr *url.Error
		if errors.As(err, &urlErr) {
			method = strings.ToUpper(urlErr.Op)
		}
		if repeatable(method) || neverSent(err) {
			g.noteRetry("network error", method, "", err)
			return true, nil
		}
		return false, nil
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
	g.noteRetry(resp.Status, resp.Request.Method, resp.Request.URL.Path, nil)
	return true, nil
}

func (g *GitLab) noteRetry(why, method, path string, err error) {
	g.retries.Add(1)
	attrs := []any{"why", why, "method", method}
	if path != "" {
		attrs = append(attrs, "path", path)
	}
	if err != nil {
		attrs = append(attrs, "error", err.Error())
	}
	g.log.Warn("GitLab API: retrying", attrs...)
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
	return errors.As(err, &dnsErr) && !dnsErr.IsNotFound
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
