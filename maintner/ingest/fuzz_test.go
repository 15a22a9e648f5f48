package ingest

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// FuzzParseChangeRef checks that ref names from a Gerrit server never
// panic the parser and that what it accepts formats back to itself.
func FuzzParseChangeRef(f *testing.F) {
	for _, s := range []string{"refs/changes/45/12345/meta", "refs/changes/07/7/3", "refs/changes/00/100/1",
		"refs/changes/7/7/1", "refs/changes/07/07/1", "refs/changes/07/7/robot-comments", "refs/heads/main", "refs/changes/99/99/99999999999999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, ref string) {
		cl, ps, ok := parseChangeRef(ref)
		if !ok {
			return
		}
		if cl <= 0 || ps < 0 {
			t.Fatalf("%q: change %d patch set %d", ref, cl, ps)
		}
		want := changeRefPrefix(cl) + "meta"
		if ps > 0 {
			want = fmt.Sprintf("%s%d", changeRefPrefix(cl), ps)
		}
		if want != ref {
			t.Fatalf("%q parsed as %d/%d, which formats as %q", ref, cl, ps, want)
		}
	})
}

// FuzzRateLimitHeaders checks that any rate-limit headers give a wait
// that ends in the future (never a spin) or no rate limit at all.
func FuzzRateLimitHeaders(f *testing.F) {
	f.Add(403, "0", "1700000000", "")
	f.Add(429, "", "", "30")
	f.Add(429, "", "", "-1")
	f.Add(403, "12", "x", "")
	f.Add(403, "0", "99999999999999999999", "")
	f.Fuzz(func(t *testing.T, code int, remaining, reset, retryAfter string) {
		resp := &http.Response{StatusCode: code, Header: http.Header{}}
		for k, v := range map[string]string{"X-RateLimit-Remaining": remaining, "X-RateLimit-Reset": reset, "Retry-After": retryAfter} {
			if v != "" && !strings.ContainsAny(v, "\r\n") {
				resp.Header.Set(k, v)
			}
		}
		now := time.Unix(1700000000, 0)
		until, limited := rateLimitedUntil(resp, now)
		if limited && !until.After(now) {
			t.Fatalf("rate limited until %v, not after now %v", until, now)
		}
	})
}

// FuzzParseRefs checks the for-each-ref parser on arbitrary output.
func FuzzParseRefs(f *testing.F) {
	f.Add("0123456789abcdef0123456789abcdef01234567 refs/heads/main\n")
	f.Add("zz refs/heads/main\n")
	f.Add("0123456789abcdef0123456789abcdef01234567\n")
	f.Fuzz(func(t *testing.T, out string) {
		refs, err := parseRefs([]byte(out))
		if err != nil {
			return
		}
		for _, r := range refs {
			if r.name == "" {
				t.Fatalf("empty ref name from %q", out)
			}
		}
	})
}

// FuzzIsMetaCommit runs the NoteDb meta commit test on arbitrary raw
// commits (they come from the Gerrit server).
func FuzzIsMetaCommit(f *testing.F) {
	f.Add([]byte("tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\nauthor A <a@b> 1 +0000\ncommitter A <a@b> 1 +0000\n\nUpdate patch set 1\n\nPatch-set: 1\n"))
	f.Add([]byte("tree x\n\nsubject\n\nbody\n"))
	f.Add([]byte("\n\n\n\nPatch-set: "))
	f.Fuzz(func(t *testing.T, raw []byte) {
		isMetaCommit(raw)
		unquoteGitPath(string(raw))
	})
}
