package deps

import (
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/tryd-ci/tryd"

// allowed lists, for each top-level folder, the tryd packages (by prefix,
// relative to the module) its non-test code may import. Every folder may
// import internal/ helpers; cmd/ may import everything.
var allowed = map[string][]string{
	"maintner":     {"maintner"},
	"pubsubhelper": {"pubsubhelper"},
	"gitmirror":    {"gitmirror"},
	"coordinator":  {"coordinator"},
	"worker":       {"worker", "coordinator/graph", "coordinator/api"},
	"trybot":       {"trybot", "maintner", "coordinator/graph", "coordinator/api", "gitmirror/client"},
	"dashboard":    {"dashboard", "coordinator/graph", "coordinator/api", "maintner", "trybot"},
	"internal":     {"internal"},
	"compat":       {},
	"bench":        {"*"},
	"cmd":          {"*"},
}

// reviewSystems are the client libraries of Gerrit and GitHub; only the
// folders that ingest, receive or report review activity may use them.
var reviewSystems = []string{"github.com/google/go-github", "github.com/andygrunwald/go-gerrit"}

var mayUseReviewSystems = map[string]bool{
	"maintner": true, "pubsubhelper": true, "trybot": true, "internal": true, "cmd": true, "bench": true,
}

func TestDependencyRules(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", "{{.ImportPath}}{{range .Imports}} {{.}}{{end}}", module+"/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Fields(line)
		pkg := strings.TrimPrefix(strings.TrimPrefix(fields[0], module), "/")
		if pkg == "" {
			continue
		}
		top, _, _ := strings.Cut(pkg, "/")
		rules, ok := allowed[top]
		if !ok {
			t.Errorf("package %s is in top-level folder %q, which DESIGN.md does not list; add it to the table", pkg, top)
			continue
		}
		for _, imp := range fields[1:] {
			for _, rs := range reviewSystems {
				if strings.HasPrefix(imp, rs) && !mayUseReviewSystems[top] {
					t.Errorf("%s imports %s: %s must know nothing of code review", pkg, imp, top)
				}
			}
			if !strings.HasPrefix(imp, module+"/") {
				continue
			}
			rel := strings.TrimPrefix(imp, module+"/")
			if strings.HasPrefix(rel, "internal/") || permitted(rules, rel) {
				continue
			}
			t.Errorf("%s imports %s, which DESIGN.md does not allow for %s/", pkg, rel, top)
		}
	}
}

func permitted(rules []string, rel string) bool {
	for _, r := range rules {
		if r == "*" || rel == r || strings.HasPrefix(rel, r+"/") {
			return true
		}
	}
	return false
}

// TestPackageDocs checks that every package says what it owns.
func TestPackageDocs(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", "{{.ImportPath}}\t{{.Doc}}", module+"/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		pkg, doc, _ := strings.Cut(line, "\t")
		if strings.TrimSpace(doc) == "" {
			t.Errorf("package %s has no package doc comment", pkg)
		}
	}
}
