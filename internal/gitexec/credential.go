package gitexec

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// Credential is a bearer token git sends to the repository URLs under
// URLPrefix (a gitmirror configured with tokens), and to no other URL. It
// reaches git as the setting http.<URLPrefix>.extraHeader through the
// environment (see CredentialEnv), never on a command line, where other
// users of the machine could read it in the process list.
type Credential struct {
	// URLPrefix is an http(s) URL ending in "/" ("http://gitmirror:8083/");
	// git matches it as it does http.<url>.* settings: same scheme, host
	// and port, and a path under the prefix's.
	URLPrefix string
	// Token is sent as "Authorization: Bearer TOKEN".
	Token string
}

// Validate refuses a credential that would leak or break git's
// configuration: a prefix that is not an http(s) URL ending in "/" (git
// would match it against more URLs than meant, or none), one with user
// info, a query or a fragment, and an empty token or line breaks in
// either (they would end the header and start another). Its errors never
// show the token.
func (c Credential) Validate() error {
	u, err := url.Parse(c.URLPrefix)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
		u.User != nil || u.RawQuery != "" || u.Fragment != "" || !strings.HasSuffix(u.Path, "/") ||
		strings.ContainsAny(c.URLPrefix, "\n\r\x00") {
		shown := c.URLPrefix
		if err == nil {
			shown = u.Redacted() // a password in user info stays out of the error
		}
		return fmt.Errorf("gitexec: credential URL prefix %q: want http(s)://host[:port]/path/ without user info, query or fragment", shown)
	}
	if c.Token == "" || strings.ContainsAny(c.Token, "\n\r\x00") {
		return fmt.Errorf("gitexec: credential for %s: empty token or one with a line break", c.URLPrefix)
	}
	return nil
}

// Config is the git setting that sends the token to URLs under the
// prefix. The credential must be valid.
func (c Credential) Config() Config {
	return Config{Key: "http." + c.URLPrefix + ".extraHeader", Value: "Authorization: Bearer " + c.Token}
}

// CredentialEnv validates creds and returns the environment variables
// that give them to git: their settings through ConfigEnv, and
// GIT_TRACE_REDACT=1 so that the header stays redacted should someone
// turn on GIT_TRACE_CURL or GIT_CURL_VERBOSE (git's standard error ends
// up in errors and logs). It returns nil for no credentials. Git reads
// one GIT_CONFIG_COUNT list per environment: a caller with settings of
// its own must pass them all to one ConfigEnv, with the credentials'
// Config entries, instead.
func CredentialEnv(creds []Credential) ([]string, error) {
	if len(creds) == 0 {
		return nil, nil
	}
	cs := make([]Config, 0, len(creds))
	var errs []error
	for _, c := range creds {
		if err := c.Validate(); err != nil {
			errs = append(errs, err)
			continue
		}
		cs = append(cs, c.Config())
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return append([]string{"GIT_TRACE_REDACT=1"}, ConfigEnv(cs...)...), nil
}
