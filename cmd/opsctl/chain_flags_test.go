package main

import (
	"io"
	"reflect"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/opsctl/opsctl/internal/cli"
	"github.com/opsctl/opsctl/pkg/chain"
)

// parseChainFlags builds a chain verb whose runF keeps the options, runs it
// with args and returns the options and the Factory it was built with:
// flag parsing in-process, without side effects.
func parseChainFlags[O any](t *testing.T, newCmd func(*cli.Factory, func(*O) error) *cobra.Command, args ...string) (*O, *cli.Factory) {
	t.Helper()
	f := &cli.Factory{IO: &cli.IOStreams{Out: io.Discard, ErrOut: io.Discard}, Getenv: func(string) string { return "" }}
	var got *O
	cmd := newCmd(f, func(o *O) error { got = o; return nil })
	cmd.SetArgs(args)
	cmd.SetOut(io.Discard)
	cmd.SetErr(io.Discard)
	if err := cmd.Execute(); err != nil {
		t.Fatalf("%v: %v", args, err)
	}
	if got == nil {
		t.Fatalf("%v: runF was not called", args)
	}
	return got, f
}

func TestChainFlagsParseIntoOptions(t *testing.T) {
	f := &cli.Factory{IO: &cli.IOStreams{}, Getenv: func(string) string { return "" }}
	var got *ChainPlanOptions
	cmd := NewCmdChainPlan(f, func(o *ChainPlanOptions) error { got = o; return nil })
	cmd.SetArgs([]string{"--gitlab-url", "https://g.example", "--group", "img", "--registry", "r1.example", "--registry", "r2.example:5050", "--concurrency", "3", "-o", "json", "img/base", "img/x"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	if got.Source.GitLabURL != "https://g.example" || got.Source.Group != "img" || !reflect.DeepEqual(got.Source.Registries, []string{"r1.example", "r2.example:5050"}) ||
		got.Source.Concurrency != 3 || !got.Output.JSON() || !reflect.DeepEqual(got.Roots, []string{"img/base", "img/x"}) {
		t.Errorf("options %+v", got)
	}
}

func TestChainScanFlagsParseIntoOptions(t *testing.T) {
	got, f := parseChainFlags(t, NewCmdChainScan, "--dir", "/src/images", "--registry", "r.example", "--concurrency", "2", "-o", "mermaid")
	if got.Factory != f || got.Source.Dir != "/src/images" || !reflect.DeepEqual(got.Source.Registries, []string{"r.example"}) ||
		got.Source.Concurrency != 2 || got.Output.Value != "mermaid" {
		t.Errorf("options %+v", got)
	}
}

func TestChainHooksSyncFlagsParseIntoOptions(t *testing.T) {
	got, f := parseChainFlags(t, NewCmdChainHooksSync, "--gitlab-url", "https://g.example", "--group", "img", "--token-file", "/etc/token",
		"--hook-url", "https://chain.example/hook", "--webhook-secret-file", "/etc/secret", "--dry-run")
	if got.Factory != f || got.Source.GitLabURL != "https://g.example" || got.Source.Group != "img" || got.Source.TokenFile != "/etc/token" ||
		got.HookURL != "https://chain.example/hook" || got.WebhookSecretFile != "/etc/secret" || !got.DryRun || got.Source.Concurrency != 8 {
		t.Errorf("options %+v", got)
	}
}

func TestChainServeFlagsParseIntoOptions(t *testing.T) {
	got, f := parseChainFlags(t, NewCmdChainServe)
	if got.Factory != f || got.Listen != "127.0.0.1:8686" || got.State != "/var/lib/opsctl/chain.db" || got.RescanInterval != 15*time.Minute ||
		got.Source.APITimeout != 30*time.Second || got.WatchExternal != 0 || got.InsecureNoSecret ||
		got.Retention != (retentionOptions{Days: int(chain.DefaultRetentionAge / (24 * time.Hour)), Runs: chain.DefaultRetentionRuns}) {
		t.Errorf("defaults %+v", got)
	}
	got, _ = parseChainFlags(t, NewCmdChainServe, "--listen", ":9000", "--state", "/srv/chain.db", "--webhook-secret-file", "/etc/secret",
		"--insecure-no-webhook-secret", "--api-timeout", "5s", "--watch-external", "1h", "--registry-auth-file", "/etc/auth.json",
		"--plain-http-registry", "r:5000", "--rescan-interval", "0", "--retention-days", "7", "--retention-runs", "50", "--gitlab-url", "https://g.example")
	if got.Listen != ":9000" || got.State != "/srv/chain.db" || got.SecretFile != "/etc/secret" || !got.InsecureNoSecret ||
		got.Source.APITimeout != 5*time.Second || got.WatchExternal != time.Hour || got.Registry.AuthFile != "/etc/auth.json" ||
		!reflect.DeepEqual(got.Registry.PlainHTTP, []string{"r:5000"}) || got.RescanInterval != 0 ||
		got.Retention != (retentionOptions{Days: 7, Runs: 50}) || got.Source.GitLabURL != "https://g.example" {
		t.Errorf("options %+v", got)
	}
}

func TestChainTriggerFlagsParseIntoOptions(t *testing.T) {
	got, f := parseChainFlags(t, NewCmdChainTrigger, "/img/base/", "--ref", "v2", "--dry-run", "--server", "http://r.example:8686",
		"--webhook-secret-file", "/etc/secret", "--follow", "--state", "/srv/follow.db", "--interval", "1m", "--api-timeout", "10s", "-o", "json")
	if got.Factory != f || got.Project != "img/base" || got.Ref != "v2" || !got.DryRun || got.Server != "http://r.example:8686" ||
		got.SecretFile != "/etc/secret" || !got.Follow || got.State != "/srv/follow.db" || got.Interval != time.Minute ||
		got.Source.APITimeout != 10*time.Second || !got.Output.JSON() {
		t.Errorf("options %+v", got)
	}
	got, _ = parseChainFlags(t, NewCmdChainTrigger, "img/base")
	if got.State != "/var/lib/opsctl/chain-follow.db" || got.Interval != 15*time.Second || got.Output.JSON() {
		t.Errorf("defaults %+v", got)
	}
}

func TestChainStatusFlagsParseIntoOptions(t *testing.T) {
	got, f := parseChainFlags(t, NewCmdChainStatus, "20261126-101500-a1b2c3d4", "--server", "http://r.example:8686", "--state", "/srv/chain.db",
		"--limit", "0", "--exit-status", "-o", "json")
	if got.Factory != f || got.RunID != "20261126-101500-a1b2c3d4" || got.Server != "http://r.example:8686" || got.State != "/srv/chain.db" ||
		got.Limit != 0 || !got.ExitStatus || !got.Output.JSON() {
		t.Errorf("options %+v", got)
	}
	if got, _ = parseChainFlags(t, NewCmdChainStatus); got.RunID != "" || got.Limit != 20 {
		t.Errorf("defaults %+v", got)
	}
}

func TestChainWatchFlagsParseIntoOptions(t *testing.T) {
	got, f := parseChainFlags(t, NewCmdChainWatch, "--state", "/srv/watch.db", "--once", "--interval", "2h", "--dry-run",
		"--registry-auth-file", "/etc/auth.json", "--plain-http-registry", "r:5000", "--retention-runs", "3", "-o", "json")
	if got.Factory != f || got.State != "/srv/watch.db" || !got.Once || got.Interval != 2*time.Hour || !got.DryRun ||
		got.Registry.AuthFile != "/etc/auth.json" || !reflect.DeepEqual(got.Registry.PlainHTTP, []string{"r:5000"}) ||
		got.Retention.Runs != 3 || !got.Output.JSON() {
		t.Errorf("options %+v", got)
	}
	if got, _ = parseChainFlags(t, NewCmdChainWatch, "--state", "w.db"); got.Interval != 6*time.Hour || got.Once || got.DryRun {
		t.Errorf("defaults %+v", got)
	}
}
