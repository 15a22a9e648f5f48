package githubsim

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-github/v60/github"

	"github.com/tryd-ci/tryd/internal/jsonshape"
	"github.com/tryd-ci/tryd/internal/testenv"
)

// TestInstallationsPaged checks an App installed on more than 100
// accounts, one of them with more than 100 repositories: GET
// /app/installations and GET /installation/repositories page as GitHub
// (30 by default, at most 100, Link rel="next" and "last"), go-github
// following NextPage sees every installation and every repository once,
// each installation's account is its repositories' owner (a user or an
// organization), and an installation's token sees its own account's
// repositories only.
func TestInstallationsPaged(t *testing.T) {
	w := newWorld(t, Options{})
	ctx := ctxT(t)
	const accounts, bigRepos = 101, 102 // octo's installation, 100 more; octo's repositories
	want := map[string]string{"octo": "User"}
	for i := 1; i < accounts; i++ {
		login := fmt.Sprintf("acct%03d", i)
		kind := "User"
		if i%2 == 0 {
			kind = "Organization"
			if err := w.s.AddOrg(login, "wendy"); err != nil {
				t.Fatal(err)
			}
		}
		want[login] = kind
		if err := w.s.CreateRepo(ctx, login+"/r"); err != nil {
			t.Fatal(err)
		}
	}
	for i := 1; i < bigRepos; i++ { // octo/hello is the first
		if err := w.s.CreateRepo(ctx, fmt.Sprintf("octo/r%03d", i)); err != nil {
			t.Fatal(err)
		}
	}
	asApp := jwtClient(t, w)

	t.Run("installations", func(t *testing.T) {
		seen := map[string]int64{}
		var last int64
		opts := &github.ListOptions{}
		pages := 0
		for {
			l, resp, err := asApp.Apps.ListInstallations(ctx, opts)
			if err != nil {
				t.Fatal(err)
			}
			pages++
			for _, in := range l {
				acct := in.GetAccount()
				if _, dup := seen[acct.GetLogin()]; dup {
					t.Errorf("installation on %s listed twice", acct.GetLogin())
				}
				seen[acct.GetLogin()] = in.GetID()
				if in.GetID() <= last {
					t.Errorf("installation %d listed after %d: want ascending IDs", in.GetID(), last)
				}
				last = in.GetID()
				if acct.GetType() != want[acct.GetLogin()] || in.GetTargetType() != acct.GetType() || in.GetTargetID() != acct.GetID() {
					t.Errorf("installation %d: account %s %s, target %s %d; want %s", in.GetID(), acct.GetLogin(), acct.GetType(), in.GetTargetType(), in.GetTargetID(), want[acct.GetLogin()])
				}
				id, err := w.s.InstallationID("tryd", acct.GetLogin())
				if err != nil || id != in.GetID() {
					t.Errorf("InstallationID(%s) = %d, %v; listed %d", acct.GetLogin(), id, err, in.GetID())
				}
			}
			if resp.NextPage == 0 {
				break
			}
			opts.Page = resp.NextPage
		}
		if len(seen) != accounts || pages != 4 {
			t.Errorf("%d installations in %d pages, want %d in 4 (30 a page)", len(seen), pages, accounts)
		}
		// The account of a repository's installation is its owner.
		for _, slug := range []string{"octo/hello", "acct002/r", "acct003/r"} {
			owner, name, _ := strings.Cut(slug, "/")
			in, _, err := asApp.Apps.FindRepositoryInstallation(ctx, owner, name)
			if err != nil || in.GetAccount().GetLogin() != owner || in.GetID() != seen[owner] {
				t.Errorf("installation of %s = %d on %s, %v; want %d on %s", slug, in.GetID(), in.GetAccount().GetLogin(), err, seen[owner], owner)
			}
		}
	})

	t.Run("link header", func(t *testing.T) {
		creds, err := w.s.AppCredentials("tryd")
		if err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			name, query string
			n           int
			next, last  string // page numbers in the Link header ("" none)
		}{
			{"default", "", 30, "2", "4"},
			{"max", "?per_page=1000", 100, "2", "2"},
			{"last page", "?per_page=100&page=2", 1, "", ""},
			{"past the end", "?page=9", 0, "", ""},
		} {
			t.Run(tc.name, func(t *testing.T) {
				req, err := asApp.NewRequest("GET", "app/installations"+tc.query, nil)
				if err != nil {
					t.Fatal(err)
				}
				var l []*github.Installation
				resp, err := asApp.Do(ctx, req, &l)
				if err != nil {
					t.Fatal(err)
				}
				if len(l) != tc.n {
					t.Errorf("%d installations, want %d", len(l), tc.n)
				}
				link := resp.Header.Get("Link")
				for rel, page := range map[string]string{"next": tc.next, "last": tc.last} {
					m := regexp.MustCompile(`<[^>]*[?&]page=(\d+)[^>]*>; rel="` + rel + `"`).FindStringSubmatch(link)
					switch {
					case page == "" && m != nil:
						t.Errorf("Link %q has rel=%q", link, rel)
					case page != "" && (m == nil || m[1] != page):
						t.Errorf("Link %q: rel=%q want page %s", link, rel, page)
					}
				}
				if tc.n > 0 && l[0].GetID() < creds.InstallationID {
					t.Errorf("installation %d before the first, %d", l[0].GetID(), creds.InstallationID)
				}
			})
		}
	})

	t.Run("installation repositories", func(t *testing.T) {
		for _, tc := range []struct {
			account  string
			n        int
			outside  string // a repository of another account: 404
			perPage  int
			wantPage int
		}{
			{"octo", bigRepos, "acct001/r", 0, 4},
			{"octo", bigRepos, "acct002/r", 100, 2},
			{"acct002", 1, "octo/hello", 0, 1},
		} {
			t.Run(fmt.Sprintf("%s per_page=%d", tc.account, tc.perPage), func(t *testing.T) {
				id, err := w.s.InstallationID("tryd", tc.account)
				if err != nil {
					t.Fatal(err)
				}
				it, _, err := asApp.Apps.CreateInstallationToken(ctx, id, nil)
				if err != nil {
					t.Fatal(err)
				}
				c := client(t, w.s, it.GetToken())
				seen := map[string]bool{}
				opts := &github.ListOptions{PerPage: tc.perPage}
				pages := 0
				for {
					l, resp, err := c.Apps.ListRepos(ctx, opts)
					if err != nil {
						t.Fatal(err)
					}
					pages++
					if l.GetTotalCount() != tc.n {
						t.Errorf("total_count %d, want %d", l.GetTotalCount(), tc.n)
					}
					for _, r := range l.Repositories {
						if seen[r.GetFullName()] || r.GetOwner().GetLogin() != tc.account {
							t.Errorf("repository %s listed twice or not %s's", r.GetFullName(), tc.account)
						}
						seen[r.GetFullName()] = true
					}
					if resp.NextPage == 0 {
						break
					}
					opts.Page = resp.NextPage
				}
				if len(seen) != tc.n || pages != tc.wantPage {
					t.Errorf("%d repositories in %d pages, want %d in %d", len(seen), pages, tc.n, tc.wantPage)
				}
				owner, name, _ := strings.Cut(tc.outside, "/")
				if _, _, err := c.Repositories.Get(ctx, owner, name); !isStatus(err, http.StatusNotFound) {
					t.Errorf("%s's token on %s = %v, want 404", tc.account, tc.outside, err)
				}
			})
		}
	})

	t.Run("no installation token", func(t *testing.T) {
		_, _, err := client(t, w.s, w.writeTok).Apps.ListRepos(ctx, nil)
		if !isStatus(err, http.StatusForbidden) {
			t.Errorf("a user's token listing installation repositories = %v, want 403", err)
		}
	})
}

// TestInstallationAccount checks the installation event of an App on an
// organization: its account is the organization (shape as GitHub's
// recorded payload), target_type Organization, the html_url the
// organization's settings, and the sender one of its members.
func TestInstallationAccount(t *testing.T) {
	w := newWorld(t, Options{})
	ctx := ctxT(t)
	if err := w.s.AddOrg("gophers", "wendy"); err != nil {
		t.Fatal(err)
	}
	if err := w.s.CreateRepo(ctx, "gophers/tools"); err != nil {
		t.Fatal(err)
	}
	for _, step := range []func() error{
		func() error { return w.s.DeleteInstallation(ctx, "tryd", "gophers") },
		func() error { _, err := w.s.CreateInstallation(ctx, "tryd", "gophers"); return err },
		func() error { return w.s.Flush(ctx) },
	} {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
	ds := w.appRC.byEvent(t, "installation", "created")
	if len(ds) != 1 {
		t.Fatalf("%d installation created deliveries, want 1", len(ds))
	}
	want, err := os.ReadFile(testenv.Fixture(t, "github/webhooks/installation/created.payload.json"))
	if err != nil {
		t.Fatal(err)
	}
	// Permissions: a map keyed by what the app was granted; app_slug:
	// sent in newer payloads (the REST API has it), not in the 2019
	// sample.
	ms, err := jsonshape.Compare(want, ds[0].body, jsonshape.Options{Ignore: []string{"installation.permissions", "installation.app_slug"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		t.Errorf("shape: %s", m)
	}
	var ev struct {
		Installation struct {
			ID         int64  `json:"id"`
			TargetID   int64  `json:"target_id"`
			TargetType string `json:"target_type"`
			HTMLURL    string `json:"html_url"`
			Account    struct {
				Login string `json:"login"`
				ID    int64  `json:"id"`
				Type  string `json:"type"`
			} `json:"account"`
		} `json:"installation"`
		Repositories []struct {
			FullName string `json:"full_name"`
		} `json:"repositories"`
		Sender struct {
			Login string `json:"login"`
		} `json:"sender"`
	}
	if err := json.Unmarshal(ds[0].body, &ev); err != nil {
		t.Fatal(err)
	}
	in := ev.Installation
	id, err := w.s.InstallationID("tryd", "gophers")
	if err != nil {
		t.Fatal(err)
	}
	switch {
	case in.ID != id, in.Account.Login != "gophers", in.Account.Type != "Organization", in.TargetType != "Organization", in.TargetID != in.Account.ID:
		t.Errorf("installation %+v, want %d on organization gophers", in, id)
	case !strings.HasSuffix(in.HTMLURL, fmt.Sprintf("/organizations/gophers/settings/installations/%d", id)):
		t.Errorf("html_url %s", in.HTMLURL)
	case len(ev.Repositories) != 1 || ev.Repositories[0].FullName != "gophers/tools":
		t.Errorf("repositories %+v, want gophers/tools only", ev.Repositories)
	case ev.Sender.Login != "wendy":
		t.Errorf("sender %s, want the member wendy", ev.Sender.Login)
	}
	// octo's installation was not touched.
	creds, err := w.s.AppCredentials("tryd")
	if err != nil {
		t.Fatal(err)
	}
	if octo, err := w.s.InstallationID("tryd", "octo"); err != nil || octo != creds.InstallationID || octo == id {
		t.Errorf("octo's installation %d, %v; credentials name %d", octo, err, creds.InstallationID)
	}
}
