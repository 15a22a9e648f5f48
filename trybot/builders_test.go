package trybot

import (
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/tryd-ci/tryd/coordinator/graph"
	"github.com/tryd-ci/tryd/internal/config"
)

func bp(b bool) *bool { return &b }

func testSet(t *testing.T) *Builders {
	t.Helper()
	b, err := NewBuilders([]config.Builder{
		{Name: "linux", Labels: map[string]string{"os": "linux"}, Steps: []config.Step{{Name: "build", Run: []string{"make"}}, {Name: "test", Shell: "make test", Env: map[string]string{"B": "2", "A": "1"}, Dir: "sub"}}},
		{Name: "race", TryBot: bp(false), Steps: []config.Step{{Run: []string{"go", "test", "-race"}}}},
		{Name: "only-x", Repos: []string{"x"}, Steps: []config.Step{{Run: []string{"true"}}}},
		{Name: "release", Branches: []string{"release"}, TryBot: bp(false), Steps: []config.Step{{Run: []string{"true"}}}},
		{Name: "gobot", Planner: "go"},
	}, map[string][]string{"slow": {"race", "release"}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestSelect(t *testing.T) {
	b := testSet(t)
	for _, tc := range []struct {
		name          string
		repo, branch  string
		terms         []string
		want, unknown []string
	}{
		{"default set", "y", "main", nil, []string{"gobot", "linux"}, nil},
		{"repo-limited builder", "x", "main", nil, []string{"gobot", "linux", "only-x"}, nil},
		{"slowbot by name", "y", "main", []string{"race"}, []string{"gobot", "linux", "race"}, nil},
		{"case-insensitive name", "y", "main", []string{"RACE"}, []string{"gobot", "linux", "race"}, nil},
		{"alias expands, branch filters", "y", "main", []string{"slow"}, []string{"gobot", "linux", "race"}, []string{"release (does not build y)"}},
		{"alias on its branch", "y", "release", []string{"slow"}, []string{"gobot", "linux", "race", "release"}, nil},
		{"unknown listed", "y", "main", []string{"nope", "race"}, []string{"gobot", "linux", "race"}, []string{"nope"}},
		{"builder not for repo", "y", "main", []string{"only-x"}, []string{"gobot", "linux"}, []string{"only-x (does not build y)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, unknown := b.Select(tc.repo, tc.branch, tc.terms)
			if !reflect.DeepEqual(got, tc.want) || !reflect.DeepEqual(unknown, tc.unknown) {
				t.Errorf("Select(%q, %q, %q) = %q, %q; want %q, %q", tc.repo, tc.branch, tc.terms, got, unknown, tc.want, tc.unknown)
			}
		})
	}
}

func TestPlan(t *testing.T) {
	b := testSet(t)
	src := graph.Source{Repo: "http://gitmirror/x.git", Revision: strings.Repeat("a", 40)}
	g, err := b.Plan("linux", src)
	if err != nil {
		t.Fatal(err)
	}
	if len(g.Jobs) != 2 || g.Jobs[0].Name != "build" || g.Jobs[1].Name != "test" || !reflect.DeepEqual(g.Jobs[1].Deps, []string{"build"}) {
		t.Fatalf("jobs %+v: want build then test depending on it", g.Jobs)
	}
	if got := g.Jobs[1].Commands[0]; !reflect.DeepEqual(got.Argv, []string{"sh", "-c", "make test"}) || !reflect.DeepEqual(got.Env, []string{"A=1", "B=2"}) || got.Dir != "sub" {
		t.Errorf("shell step command %+v", got)
	}
	if g.Jobs[0].Labels["os"] != "linux" || g.Jobs[0].Timeout == 0 {
		t.Errorf("job labels %v timeout %v", g.Jobs[0].Labels, g.Jobs[0].Timeout)
	}
	if err := g.Normalize(); err != nil {
		t.Errorf("planned graph does not normalize: %v", err)
	}
	gg, err := b.Plan("gobot", src)
	if err != nil || len(gg.Jobs) != 1 || !gg.Jobs[0].Planner || gg.Jobs[0].Commands[0].Argv[1] != "goplan" || gg.Jobs[0].Timeout == 0 {
		t.Errorf("go planner graph %+v, %v: want one planner job running tryd goplan, with a timeout", gg, err)
	} else if err := gg.Normalize(); err != nil {
		t.Errorf("go planner graph does not normalize: %v", err)
	}
	if _, err := b.Plan("nope", src); err == nil {
		t.Error("Plan of an unknown builder succeeded")
	}
}

func TestNewBuildersRejects(t *testing.T) {
	for _, tc := range []struct {
		name     string
		builders []config.Builder
		aliases  map[string][]string
	}{
		{"no steps", []config.Builder{{Name: "a"}}, nil},
		{"unknown planner", []config.Builder{{Name: "a", Planner: "bazel"}}, nil},
		{"go planner with steps", []config.Builder{{Name: "a", Planner: "go", Steps: []config.Step{{Run: []string{"true"}}}}}, nil},
		{"bad step", []config.Builder{{Name: "a", Steps: []config.Step{{Run: []string{"x"}, Shell: "y"}}}}, nil},
		{"duplicate", []config.Builder{{Name: "a", Planner: "go"}, {Name: "a", Planner: "go"}}, nil},
		{"bad name", []config.Builder{{Name: "a b", Planner: "go"}}, nil},
		{"alias to unknown", []config.Builder{{Name: "a", Planner: "go"}}, map[string][]string{"x": {"b"}}},
		{"alias shadows builder", []config.Builder{{Name: "a", Planner: "go"}}, map[string][]string{"a": {"a"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := NewBuilders(tc.builders, tc.aliases); err == nil {
				t.Error("accepted")
			}
		})
	}
}

func TestParsers(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		want []string
	}{
		{"commas", "a,b", []string{"a", "b"}},
		{"spaces and duplicates", " a , b  a\tc", []string{"a", "b", "c"}},
		{"empty", "", nil},
		{"long term truncated", strings.Repeat("x", 150), []string{strings.Repeat("x", 100) + "…"}},
	} {
		t.Run("ParseTerms/"+tc.name, func(t *testing.T) {
			if got := ParseTerms(tc.in); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("ParseTerms(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
	for _, tc := range []struct {
		name, msg, want string
		ok              bool
	}{
		{"vote message", "Patch Set 1: Run-TryBot+1\n\nTRY=race, slow", "race, slow", true},
		{"last wins", "TRY=a\nTRY=b", "b", true},
		{"cleared", "TRY=", "", true},
		{"none", "Patch Set 1: Code-Review+2\n\nLGTM. Try it=yes", "", false},
		{"mid-line is not a request", "please TRY=x", "", false},
	} {
		t.Run("TryLine/"+tc.name, func(t *testing.T) {
			got, ok := TryLine(tc.msg)
			if got != tc.want || ok != tc.ok {
				t.Errorf("TryLine(%q) = %q, %v; want %q, %v", tc.msg, got, ok, tc.want, tc.ok)
			}
		})
	}
	for _, tc := range []struct {
		name, body, want string
		ok               bool
	}{
		{"bare", "/trybot", "", true},
		{"args", "LGTM\n/trybot race,slow\nthanks", "race,slow", true},
		{"prefix of a word", "/trybots please", "", false},
		{"quoted", "run `/trybot` to test", "", false},
	} {
		t.Run("CommandArgs/"+tc.name, func(t *testing.T) {
			got, ok := CommandArgs(tc.body, "/trybot")
			if got != tc.want || ok != tc.ok {
				t.Errorf("CommandArgs(%q) = %q, %v; want %q, %v", tc.body, got, ok, tc.want, tc.ok)
			}
		})
	}
}

func TestGerritCorpusName(t *testing.T) {
	for _, tc := range []struct{ url, project, want string }{
		{"https://go-review.googlesource.com/", "go", "go-review.googlesource.com/go"},
		{"http://127.0.0.1:8080/", "proj", "127.0.0.1:8080/proj"},
		{"https://gerrit.example.com/r/", "a/b", "gerrit.example.com/a/b"},
	} {
		got, err := GerritCorpusName(tc.url, tc.project)
		if err != nil || got != tc.want {
			t.Errorf("GerritCorpusName(%q, %q) = %q, %v; want %q", tc.url, tc.project, got, err, tc.want)
		}
	}
	if _, err := GerritCorpusName("::", "p"); err == nil {
		t.Error("bad URL accepted")
	}
}

func FuzzParseTerms(f *testing.F) {
	for _, s := range []string{"a,b", " x  y ", "", strings.Repeat("z,", 80), "é,\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		terms := ParseTerms(s)
		if len(terms) > maxTerms {
			t.Fatalf("%d terms", len(terms))
		}
		seen := map[string]bool{}
		for _, x := range terms {
			if x == "" || strings.ContainsAny(x, ", \t") || seen[x] || len(x) > maxTermLen+len("…") {
				t.Fatalf("bad term %q in %q", x, terms)
			}
			seen[x] = true
		}
		b, err := NewBuilders([]config.Builder{{Name: "a", Planner: "go"}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		names, unknown := b.Select("r", "main", terms)
		if len(names) == 0 || len(names)+len(unknown) > len(terms)+1 {
			t.Fatalf("Select(%q) = %q, %q", terms, names, unknown)
		}
	})
}

func FuzzMessages(f *testing.F) {
	for _, s := range []string{"Patch Set 1: Run-TryBot+1\n\nTRY=a", "/trybot x\n", "TRY=\n/trybot", "\xff\xfe"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if terms, ok := TryLine(s); ok && !strings.Contains(s, "TRY="+terms) && utf8.ValidString(s) {
			t.Fatalf("TryLine(%q) = %q, not in the message", s, terms)
		}
		if args, ok := CommandArgs(s, "/trybot"); ok && !strings.Contains(s, "/trybot") {
			t.Fatalf("CommandArgs(%q) = %q without the command", s, args)
		}
	})
}
