package chain

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"golang.org/x/time/rate"
)

// RegistryDigests asks OCI distribution registries for manifest digests
// through go-containerregistry, which knows Docker Hub's bearer-token
// challenge, the library/ prefix, manifest lists and OCI indexes. It sends
// HEAD (not counted as a pull by Docker Hub) and falls back to GET where a
// registry does not answer HEAD. Requests to each registry host are rate
// limited.
type RegistryDigests struct {
	// Auth holds the credentials by registry host; nil: anonymous.
	Auth *DockerConfig
	// PlainHTTP lists registries (host:port) spoken to without TLS.
	PlainHTTP []string
	// PerSecond and Burst limit the requests to one registry host
	// (default 2/s, burst 4).
	PerSecond float64
	Burst     int
	// Timeout bounds one image's look-up (default 30s).
	Timeout time.Duration

	mu       sync.Mutex
	limiters map[string]*rate.Limiter
	rt       http.RoundTripper
}

func (r *RegistryDigests) limiter(host string) *rate.Limiter {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.limiters == nil {
		r.limiters = map[string]*rate.Limiter{}
	}
	l := r.limiters[host]
	if l == nil {
		perSecond, burst := r.PerSecond, r.Burst
		if perSecond <= 0 {
			perSecond = 2
		}
		if burst <= 0 {
			burst = 4
		}
		l = rate.NewLimiter(rate.Limit(perSecond), burst)
		r.limiters[host] = l
	}
	return l
}

// limitedTransport waits for the host's limiter before each request.
type limitedTransport struct {
	r    *RegistryDigests
	next http.RoundTripper
}

func (t limitedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if err := t.r.limiter(req.URL.Host).Wait(req.Context()); err != nil {
		return nil, err
	}
	return t.next.RoundTrip(req)
}

func (r *RegistryDigests) transport() http.RoundTripper {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.rt == nil {
		r.rt = limitedTransport{r: r, next: remote.DefaultTransport}
	}
	return r.rt
}

// Digest returns the digest of the manifest (or manifest list) the
// image's tag names. A digest-pinned reference is refused: it is never
// sent to a registry.
func (r *RegistryDigests) Digest(ctx context.Context, image ImageRef) (string, error) {
	if image.Digest != "" || image.Tag == "" {
		return "", fmt.Errorf("pinned by digest: not watched")
	}
	var opts []name.Option
	for _, h := range r.PlainHTTP {
		if strings.EqualFold(h, image.Host) {
			opts = append(opts, name.Insecure)
		}
	}
	ref, err := name.ParseReference(image.String(), opts...)
	if err != nil {
		return "", err
	}
	timeout := r.Timeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var keychain authn.Keychain = authn.NewMultiKeychain()
	if r.Auth != nil {
		keychain = r.Auth
	}
	ropts := []remote.Option{remote.WithContext(ctx), remote.WithAuthFromKeychain(keychain),
		remote.WithTransport(r.transport()), remote.WithUserAgent("opsctl-chain-watch")}
	desc, err := remote.Head(ref, ropts...)
	if err == nil {
		return desc.Digest.String(), nil
	}
	if unreachable(err) || authFailure(err) || rateLimited(err) {
		// A GET would fail the same way (and Docker Hub counts it as a
		// pull).
		return "", registryError(err)
	}
	// Some registries do not answer HEAD for manifests: ask with GET.
	full, getErr := remote.Get(ref, ropts...)
	if getErr != nil {
		return "", registryError(getErr)
	}
	return full.Digest.String(), nil
}

func unreachable(err error) bool {
	var opErr *net.OpError
	return errors.As(err, &opErr) || errors.Is(err, context.DeadlineExceeded)
}

func rateLimited(err error) bool {
	var terr *transport.Error
	return errors.As(err, &terr) && terr.StatusCode == http.StatusTooManyRequests
}

func authFailure(err error) bool {
	var terr *transport.Error
	return errors.As(err, &terr) && (terr.StatusCode == http.StatusUnauthorized || terr.StatusCode == http.StatusForbidden)
}

// registryError makes one line of a registry failure.
func registryError(err error) error {
	var terr *transport.Error
	if errors.As(err, &terr) {
		switch terr.StatusCode {
		case http.StatusUnauthorized, http.StatusForbidden:
			return fmt.Errorf("registry refused access (%d): check RegistryDigests.Auth", terr.StatusCode)
		case http.StatusNotFound:
			return fmt.Errorf("no such image or tag (404)")
		case http.StatusTooManyRequests:
			return fmt.Errorf("rate limited by the registry (429); try later")
		}
		return fmt.Errorf("registry answered %d", terr.StatusCode)
	}
	return err
}

// DockerConfig is the "auths" part of a Docker config.json: credentials by
// registry host ("host:port"; Docker Hub's key is
// https://index.docker.io/v1/). It implements authn.Keychain.
type DockerConfig struct {
	auths map[string]authn.AuthConfig
}

// ParseDockerConfig reads a Docker config.json. Each entry has "auth"
// (base64 of user:password) or "username" and "password", or an
// "identitytoken". Errors name the entry, never a credential.
func ParseDockerConfig(data []byte) (*DockerConfig, error) {
	var doc struct {
		Auths map[string]struct {
			Auth          string `json:"auth"`
			Username      string `json:"username"`
			Password      string `json:"password"`
			IdentityToken string `json:"identitytoken"`
		} `json:"auths"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("not a Docker config.json: %v", jsonSyntaxOnly(err))
	}
	cfg := &DockerConfig{auths: map[string]authn.AuthConfig{}}
	for key, a := range doc.Auths {
		host := registryKeyHost(key)
		if host == "" {
			return nil, fmt.Errorf("auths key %q: expected a registry host[:port]", key)
		}
		ac := authn.AuthConfig{Username: a.Username, Password: a.Password, IdentityToken: a.IdentityToken}
		if a.Auth != "" {
			raw, err := base64.StdEncoding.DecodeString(a.Auth)
			if err != nil {
				return nil, fmt.Errorf("auths %q: auth is not base64", key)
			}
			user, pass, ok := strings.Cut(string(raw), ":")
			if !ok {
				return nil, fmt.Errorf("auths %q: auth is not base64 of user:password", key)
			}
			ac.Username, ac.Password = user, pass
		}
		if ac.Username == "" && ac.IdentityToken == "" {
			return nil, fmt.Errorf("auths %q: expected auth, username and password, or identitytoken", key)
		}
		cfg.auths[host] = ac
	}
	return cfg, nil
}

// jsonSyntaxOnly keeps the position of a JSON error without quoting input.
func jsonSyntaxOnly(err error) error {
	var syn *json.SyntaxError
	if errors.As(err, &syn) {
		return fmt.Errorf("JSON syntax error at byte %d", syn.Offset)
	}
	var typ *json.UnmarshalTypeError
	if errors.As(err, &typ) {
		return fmt.Errorf("field %s: expected %s", typ.Field, typ.Type)
	}
	return errors.New("malformed JSON")
}

// registryKeyHost turns an auths key (host, host:port, or a URL as old
// Docker versions wrote them) into the registry host.
func registryKeyHost(key string) string {
	host := strings.TrimPrefix(strings.TrimPrefix(key, "https://"), "http://")
	host, _, _ = strings.Cut(host, "/")
	host = strings.ToLower(host)
	switch host {
	case "index.docker.io", "registry-1.docker.io", "docker.io":
		return name.DefaultRegistry
	}
	if host == "" || strings.ContainsAny(host, " \t@") {
		return ""
	}
	return host
}

// Resolve implements authn.Keychain.
func (c *DockerConfig) Resolve(res authn.Resource) (authn.Authenticator, error) {
	if ac, ok := c.auths[strings.ToLower(res.RegistryStr())]; ok {
		return authn.FromConfig(ac), nil
	}
	return authn.Anonymous, nil
}
