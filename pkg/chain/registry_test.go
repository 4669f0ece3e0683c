package chain

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
)

func TestDockerConfigResolvesByHost(t *testing.T) {
	cfg, err := ParseDockerConfig([]byte(`{"auths":{
		"registry.example.com:5000": {"auth": "dXNlcjpwYXNz"},
		"https://index.docker.io/v1/": {"username": "hub", "password": "secret"},
		"ghcr.io": {"identitytoken": "tok"}
	}, "credsStore": "desktop"}`))
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string]authn.AuthConfig{
		"registry.example.com:5000/a/b:1": {Username: "user", Password: "pass"},
		"debian:bookworm":                 {Username: "hub", Password: "secret"},
		"ghcr.io/x/y:2":                   {IdentityToken: "tok"},
		"quay.io/x/y:2":                   {},
	}
	for ref, want := range cases {
		r, _ := name.ParseReference(ref)
		a, err := cfg.Resolve(r.Context().Registry)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := a.Authorization()
		if got.Username != want.Username || got.Password != want.Password || got.IdentityToken != want.IdentityToken {
			t.Errorf("%s: got %+v, want %+v", ref, got, want)
		}
	}
}

func TestDockerConfigErrorsNameTheEntryNotTheSecret(t *testing.T) {
	for _, doc := range []string{
		`{"auths":{"r.example":{"auth":"c2VjcmV0LXdpdGhvdXQtY29sb24="}}}`,
		`{"auths":{"r.example":{"password":"hunter2"}}}`,
		`{"auths":{"r.example":{"auth":"hunter2!"}}}`,
		`{"auths":{"r.example":{"auth": 5}}}`,
		`not json hunter2`,
	} {
		_, err := ParseDockerConfig([]byte(doc))
		if err == nil {
			t.Errorf("%s: accepted", doc)
			continue
		}
		if strings.Contains(err.Error(), "hunter2") || strings.Contains(err.Error(), "c2VjcmV0") {
			t.Errorf("error quotes a credential: %v", err)
		}
	}
}

// FuzzParseDockerConfig: never a panic, never a credential in an error.
func FuzzParseDockerConfig(f *testing.F) {
	f.Add([]byte(`{"auths":{"r.example:5000":{"auth":"dXNlcjpwYXNz"}}}`))
	f.Add([]byte(`{"auths":{"https://index.docker.io/v1/":{"username":"u","password":"p"}}}`))
	f.Add([]byte(`{"auths":{"":{}}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := ParseDockerConfig(data)
		if err != nil {
			if strings.Contains(err.Error(), "dXNlcjpwYXNz") {
				t.Fatalf("credential in error: %v", err)
			}
			return
		}
		for host := range cfg.auths {
			if host == "" {
				t.Fatal("empty host accepted")
			}
		}
	})
}

// A rate-limited HEAD is not followed by a GET: on Docker Hub a GET of a
// manifest counts as a pull, and it is rate limited just the same.
func TestRateLimitedHeadIsNotRetriedAsGet(t *testing.T) {
	var gets atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/v2/":
			w.WriteHeader(http.StatusOK)
		case r.Method == http.MethodHead:
			w.Header().Set("Retry-After", "0")
			w.WriteHeader(http.StatusTooManyRequests)
		default:
			gets.Add(1)
			w.WriteHeader(http.StatusTooManyRequests)
		}
	}))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	r := &RegistryDigests{PlainHTTP: []string{host}, PerSecond: 1000, Burst: 1000}
	ref, err := ParseImageRef(host + "/library/debian:bookworm")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Digest(context.Background(), ref); err == nil || !strings.Contains(err.Error(), "429") {
		t.Errorf("Digest: %v, want the 429", err)
	}
	if n := gets.Load(); n != 0 {
		t.Errorf("%d GETs of the manifest after a rate-limited HEAD, want none", n)
	}
}
