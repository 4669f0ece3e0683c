package cli

import (
	"net/url"
	"strings"
)

// ParseHTTPURL reads raw, the value of flag, as an http or https URL with a
// host and without credentials (a password in a URL ends up in logs, shell
// history and ps). The usage error names the flag and example, and never
// repeats a password given in raw.
func ParseHTTPURL(flag, raw, example string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
		return nil, Usagef("%s %q: expected an http(s) URL without credentials, like %s", flag, RedactURL(raw), example)
	}
	return u, nil
}

// RedactURL is raw with the password of its user info, if any, replaced:
// error messages name the URL a person gave, never a secret in it. A URL
// that does not parse is redacted by hand, as it is still echoed.
func RedactURL(raw string) string {
	if u, err := url.Parse(raw); err == nil {
		return u.Redacted()
	}
	scheme, rest, found := strings.Cut(raw, "://")
	if !found {
		scheme, rest = "", raw
	} else {
		scheme += "://"
	}
	if at := strings.LastIndex(rest, "@"); at >= 0 {
		if user, _, hasPassword := strings.Cut(rest[:at], ":"); hasPassword {
			return scheme + user + ":xxxxx" + rest[at:]
		}
	}
	return raw
}
