package dashboard

import (
	"fmt"
	"html/template"
	"strings"
	"time"
)

// templateNames are the pages; each is parsed with layout.html.
var templateNames = []string{"home", "grid", "tryrun", "tryruns", "build", "log", "workers", "login", "error"}

func parseTemplates() (map[string]*template.Template, error) {
	out := map[string]*template.Template{}
	for _, name := range templateNames {
		t, err := template.New(name).Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("dashboard: parse template %s: %w", name, err)
		}
		out[name] = t
	}
	return out, nil
}

var funcs = template.FuncMap{
	"short": shortRev,
	"ms":    fmtMS,
	"dur":   fmtDur,
	"time": func(t any) string {
		switch v := t.(type) {
		case time.Time:
			if v.IsZero() {
				return ""
			}
			return v.UTC().Format("2006-01-02 15:04:05Z")
		case *time.Time:
			if v == nil || v.IsZero() {
				return ""
			}
			return v.UTC().Format("2006-01-02 15:04:05Z")
		}
		return ""
	},
	"join": strings.Join,
	"add":  func(a, b int) int { return a + b },
}

// shortRev abbreviates a commit hash to 10 characters.
func shortRev(s string) string {
	if len(s) > 10 {
		return s[:10]
	}
	return s
}

func fmtMS(ms int64) string { return fmtDur(time.Duration(ms) * time.Millisecond) }

// fmtDur prints a duration for people: "850ms", "12.3s", "4m05s", "2h03m".
func fmtDur(d time.Duration) string {
	switch {
	case d < 0:
		return ""
	case d < time.Second:
		return fmt.Sprintf("%dms", d.Milliseconds())
	case d < time.Minute:
		return fmt.Sprintf("%.1fs", d.Seconds())
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	}
	return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
}
