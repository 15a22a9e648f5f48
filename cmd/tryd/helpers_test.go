package main

import (
	"context"
	"net/http"
	"regexp"
	"testing"
	"time"

	"github.com/tryd-ci/tryd/internal/testenv"
)

// upstreamRepo returns a repository with one commit on main (f.txt:
// "hello\n") for gitmirror to mirror.
func upstreamRepo(t *testing.T) string {
	t.Helper()
	r := testenv.NewGitRepo(t)
	r.Commit("one", map[string]string{"f.txt": "hello\n"})
	return r.Dir
}

// getStatus GETs url with the Authorization header auth (none if "") and
// returns the status code.
func getStatus(t *testing.T, url, auth string) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// bearer is the Authorization header for token ("" for none).
func bearer(token string) string {
	if token == "" {
		return ""
	}
	return "Bearer " + token
}

// tokenCase is a GET of path with a bearer token ("" for none) and the
// status it must answer.
type tokenCase struct {
	name, path, token string
	want              int
}

// checkTokens runs each case against the server at base, as a subtest.
func checkTokens(t *testing.T, base string, cases []tokenCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := getStatus(t, base+tc.path, bearer(tc.token)); got != tc.want {
				t.Errorf("GET %s: %d, want %d", tc.path, got, tc.want)
			}
		})
	}
}

// addrRE finds the address a server logs (JSON logs) when it listens.
var addrRE = regexp.MustCompile(`"addr":"(http://[^"]+)"`)

// startCommand runs the server subcommand "tryd <command> <args>" in
// process with JSON logs, and returns its base URL (the address it logs)
// once /healthz answers 200, and its standard error. At cleanup it is
// stopped and must exit 0.
func startCommand(t *testing.T, command string, args ...string) (string, *testenv.Buffer) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var stdout, stderr testenv.Buffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, append([]string{command, "--log-format", "json"}, args...), &stdout, &stderr)
	}()
	t.Cleanup(func() {
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("%s: exit code %d: %s", command, code, stderr.String())
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		if m := addrRE.FindStringSubmatch(stderr.String()); m != nil {
			if resp, err := http.Get(m[1] + "/healthz"); err == nil {
				resp.Body.Close()
				if resp.StatusCode == 200 {
					return m[1], &stderr
				}
			}
		}
		select {
		case code := <-done:
			done <- code
			t.Fatalf("%s exited with %d: %s", command, code, stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not healthy: %s", command, stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}
