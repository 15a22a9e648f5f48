package gerritsim

import (
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/tryd-ci/tryd/internal/notedb"
)

// query is a parsed change query: implicitly ANDed terms, each possibly
// negated.
type query struct {
	terms []term
	limit int
}

type term struct {
	neg  bool
	pred func(s *Sim, c *change, caller *Account) bool
}

// maxQueryLen bounds the query string.
const maxQueryLen = 4096

// parseQuery parses the query operators tryd uses: status:, is:, label:,
// project:, branch:, change:, owner:, topic:, hashtag:, limit:, a change
// number and a Change-Id. Unsupported syntax is a 400, as Gerrit answers
// for operators it does not know.
func parseQuery(q string) (*query, error) {
	if len(q) > maxQueryLen {
		return nil, badRequest("query too long")
	}
	out := &query{}
	toks, err := tokenize(q)
	if err != nil {
		return nil, err
	}
	for _, tok := range toks {
		neg := false
		if strings.HasPrefix(tok, "-") && len(tok) > 1 {
			neg, tok = true, tok[1:]
		} else if strings.HasPrefix(tok, "NOT:") {
			neg, tok = true, tok[4:]
		}
		if tok == "AND" {
			continue
		}
		if tok == "OR" || strings.ContainsAny(tok, "()") {
			return nil, badRequest("Unsupported query syntax: %s", tok)
		}
		op, val, hasOp := strings.Cut(tok, ":")
		if !hasOp {
			if n, err := strconv.Atoi(tok); err == nil && n > 0 {
				out.terms = append(out.terms, term{neg, func(_ *Sim, c *change, _ *Account) bool { return c.number == n }})
				continue
			}
			if strings.HasPrefix(tok, "I") && len(tok) >= 8 {
				id := tok
				out.terms = append(out.terms, term{neg, func(_ *Sim, c *change, _ *Account) bool { return strings.HasPrefix(c.changeID, id) }})
				continue
			}
			return nil, badRequest("Unsupported query: %s", tok)
		}
		val = strings.Trim(val, "\"{}")
		var pred func(s *Sim, c *change, caller *Account) bool
		switch strings.ToLower(op) {
		case "status", "is":
			st, err := statusPred(val)
			if err != nil {
				return nil, err
			}
			pred = st
		case "project":
			pred = func(_ *Sim, c *change, _ *Account) bool { return c.project.Name == val }
		case "branch":
			b := strings.TrimPrefix(val, "refs/heads/")
			pred = func(_ *Sim, c *change, _ *Account) bool { return c.branch == b }
		case "change":
			n, err := strconv.Atoi(val)
			if err != nil {
				pred = func(_ *Sim, c *change, _ *Account) bool { return c.changeID == val }
			} else {
				pred = func(_ *Sim, c *change, _ *Account) bool { return c.number == n }
			}
		case "topic":
			pred = func(_ *Sim, c *change, _ *Account) bool { return c.notes.Topic == val }
		case "hashtag":
			pred = func(_ *Sim, c *change, _ *Account) bool {
				for _, h := range c.notes.Hashtags {
					if strings.EqualFold(h, val) {
						return true
					}
				}
				return false
			}
		case "owner":
			pred = func(s *Sim, c *change, caller *Account) bool { return s.matchesAccount(c.notes.Owner, val, caller) }
		case "label":
			p, err := labelPred(val)
			if err != nil {
				return nil, err
			}
			pred = p
		case "after", "since", "before", "until":
			ts, err := parseQueryTime(val)
			if err != nil {
				return nil, err
			}
			after := op == "after" || op == "since"
			pred = func(_ *Sim, c *change, _ *Account) bool {
				if after {
					return !c.notes.Updated.Before(ts)
				}
				return !c.notes.Updated.After(ts)
			}
		case "limit":
			n, err := strconv.Atoi(val)
			if err != nil || n <= 0 {
				return nil, badRequest("Invalid limit: %s", val)
			}
			out.limit = n
			continue
		default:
			return nil, badRequest("Unsupported operator %s:%s", op, val)
		}
		out.terms = append(out.terms, term{neg, pred})
	}
	if len(out.terms) == 0 && out.limit == 0 {
		return nil, badRequest("empty query")
	}
	return out, nil
}

// tokenize splits a query on white space, keeping "quoted" and {braced}
// values (which may hold spaces) in one token.
func tokenize(q string) ([]string, error) {
	var out []string
	var cur strings.Builder
	var quote rune
	for _, r := range q {
		switch {
		case quote != 0:
			cur.WriteRune(r)
			if r == quote {
				quote = 0
			}
		case r == '"':
			quote = '"'
			cur.WriteRune(r)
		case r == '{':
			quote = '}'
			cur.WriteRune(r)
		case r == ' ' || r == '\t' || r == '\n' || r == '\r':
			if cur.Len() > 0 {
				out = append(out, cur.String())
				cur.Reset()
			}
		default:
			cur.WriteRune(r)
		}
	}
	if quote != 0 {
		return nil, badRequest("Unbalanced quote in query: %s", q)
	}
	if cur.Len() > 0 {
		out = append(out, cur.String())
	}
	return out, nil
}

// parseQueryTime reads the timestamps Gerrit's after:/before: accept:
// "2006-01-02", "2006-01-02 15:04:05" and with fractional seconds, UTC.
func parseQueryTime(v string) (time.Time, error) {
	for _, layout := range []string{"2006-01-02 15:04:05.999999999", "2006-01-02 15:04:05", "2006-01-02 15:04", "2006-01-02"} {
		if t, err := time.Parse(layout, v); err == nil {
			return t, nil
		}
	}
	return time.Time{}, badRequest("Invalid timestamp: %s", v)
}

func statusPred(v string) (func(*Sim, *change, *Account) bool, error) {
	var want []string
	switch strings.ToLower(v) {
	case "open", "new", "pending":
		want = []string{notedb.StatusNew}
	case "merged":
		want = []string{notedb.StatusMerged}
	case "abandoned":
		want = []string{notedb.StatusAbandoned}
	case "closed":
		want = []string{notedb.StatusMerged, notedb.StatusAbandoned}
	case "wip":
		return func(_ *Sim, c *change, _ *Account) bool { return c.notes.WorkInProgress }, nil
	case "private":
		return func(_ *Sim, c *change, _ *Account) bool { return c.notes.Private }, nil
	default:
		return nil, badRequest("Unrecognized value: %s", v)
	}
	return func(_ *Sim, c *change, _ *Account) bool {
		for _, w := range want {
			if c.notes.Status == w {
				return true
			}
		}
		return false
	}, nil
}

// labelPred handles label:Name=V, label:Name=+V, label:Name>=V and
// label:Name<=V, matched against the current patch set's votes. "=0"
// matches a change nobody voted on for that label, as in Gerrit.
func labelPred(v string) (func(*Sim, *change, *Account) bool, error) {
	var name, op, num string
	for _, o := range []string{">=", "<=", "=", ">", "<"} {
		if i := strings.Index(v, o); i > 0 {
			name, op, num = v[:i], o, v[i+len(o):]
			break
		}
	}
	if name == "" {
		return nil, badRequest("Invalid label query: %s", v)
	}
	num, user, _ := strings.Cut(num, ",")
	if user != "" {
		return nil, badRequest("Unsupported label query: %s", v)
	}
	want, err := strconv.Atoi(strings.TrimPrefix(num, "+"))
	if err != nil {
		return nil, badRequest("Invalid label value: %s", num)
	}
	cmp := func(x int) bool {
		switch op {
		case ">=":
			return x >= want
		case "<=":
			return x <= want
		case ">":
			return x > want
		case "<":
			return x < want
		}
		return x == want
	}
	return func(_ *Sim, c *change, _ *Account) bool {
		voted := false
		for _, a := range c.notes.CurrentVotes() {
			if strings.EqualFold(a.Label, name) {
				voted = true
				if cmp(a.Value) {
					return true
				}
			}
		}
		return !voted && cmp(0)
	}, nil
}

func (s *Sim) matchesAccount(id int, val string, caller *Account) bool {
	if val == "self" {
		return caller != nil && caller.ID == id
	}
	if strconv.Itoa(id) == val {
		return true
	}
	a, ok := s.accounts[id]
	return ok && (strings.EqualFold(a.Username, val) || a.Email != "" && strings.EqualFold(a.Email, val))
}

// queryChanges answers GET /changes/?q=...: one list for one q, a list of
// lists for several; n= (or limit:) bounds each list and S= skips, with
// _more_changes on the last entry when truncated. Results are newest
// updated first.
func (s *Sim) queryChanges(req *request) (any, error) {
	vals := req.r.URL.Query()
	opts, err := parseOptions(vals["o"])
	if err != nil {
		return nil, err
	}
	qs := vals["q"]
	if len(qs) == 0 {
		qs = []string{"status:open"}
	}
	limit := 0
	if n := vals.Get("n"); n != "" {
		if limit, err = strconv.Atoi(n); err != nil || limit < 0 {
			return nil, badRequest("Invalid value for n: %s", n)
		}
	}
	start := 0
	if st := vals.Get("S"); st != "" {
		if start, err = strconv.Atoi(st); err != nil || start < 0 {
			return nil, badRequest("Invalid value for S: %s", st)
		}
	}
	var parsed []*query
	for _, q := range qs {
		pq, err := parseQuery(q)
		if err != nil {
			return nil, err
		}
		parsed = append(parsed, pq)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var results [][]*changeInfo
	for _, pq := range parsed {
		var matched []*change
		for _, c := range s.changes {
			ok := true
			for _, t := range pq.terms {
				if t.pred(s, c, req.caller) == t.neg {
					ok = false
					break
				}
			}
			if ok {
				matched = append(matched, c)
			}
		}
		sort.Slice(matched, func(i, j int) bool {
			a, b := matched[i].notes.Updated, matched[j].notes.Updated
			if !a.Equal(b) {
				return a.After(b)
			}
			return matched[i].number > matched[j].number
		})
		if start < len(matched) {
			matched = matched[start:]
		} else {
			matched = nil
		}
		lim := limit
		if pq.limit > 0 && (lim == 0 || pq.limit < lim) {
			lim = pq.limit
		}
		more := false
		if lim > 0 && len(matched) > lim {
			matched, more = matched[:lim], true
		}
		list := []*changeInfo{}
		for _, c := range matched {
			list = append(list, s.changeInfoLocked(c, opts, req.caller))
		}
		if more {
			list[len(list)-1].MoreChanges = true
		}
		results = append(results, list)
	}
	if len(results) == 1 {
		return results[0], nil
	}
	return results, nil
}
