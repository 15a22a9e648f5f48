package graph

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"path"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"
)

var (
	revisionRE = regexp.MustCompile(`^([0-9a-f]{40}|[0-9a-f]{64})$`)
	labelKeyRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._/-]*$`)
	envKeyRE   = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	// placeholderRE finds every {{...}} in a string.
	placeholderRE = regexp.MustCompile(`\{\{([^{}]*)\}\}`)
)

// IsID reports whether s has the form of a job ID or a SHA-256 digest: 64
// lower-case hex digits.
func IsID(s string) bool { return IsDigest(s) }

// IsDigest reports whether s is a lower-case hex SHA-256 digest. It is
// checked for every result and artifact a coordinator handles, so it is a
// loop rather than a regular expression (a tenth of the time).
func IsDigest(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := range len(s) {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// problems collects validation messages.
type problems []string

func (p *problems) add(format string, args ...any) { *p = append(*p, fmt.Sprintf(format, args...)) }

func (p problems) err() error {
	if len(p) == 0 {
		return nil
	}
	return &ValidationError{Problems: p}
}

// Normalize validates the graph, resolves dependencies and {{DEP:x}}
// placeholders given as names to IDs, sorts the source files, fills input
// digests of uploaded sources, and computes (or checks) every job's ID. It
// returns a *ValidationError (errors.Is ErrInvalid) listing every problem
// found, each naming its job.
func (g *Graph) Normalize() error {
	var p problems
	identity := g.checkSource(&p)
	if len(g.Jobs) == 0 {
		p.add("graph has no jobs")
	}
	if len(g.Jobs) > MaxJobs {
		p.add("graph has %d jobs, more than the limit of %d", len(g.Jobs), MaxJobs)
		return p.err()
	}
	if len(p) > 0 {
		return p.err()
	}
	return normalizeJobs(g.Jobs, nil, g.Source, identity, &p)
}

// Splice validates a planner's fragment (its jobs; its source is ignored,
// the build's is used) against the already normalized graph g and appends
// its jobs to g. Fragment jobs may depend on jobs of g by name or ID, and
// on each other. It returns the new jobs.
//
// A planner's output comes from the code it built, which may be untrusted
// (a change under review), so every fragment job must require each of the
// planner's labels with the same value: a planner confined to one worker
// pool cannot send work to another, more privileged one. A fragment job
// may add labels of its own (narrowing further) but not drop or change
// the planner's; one that does is rejected, by name.
func (g *Graph) Splice(planner *Job, fragment *Graph) ([]*Job, error) {
	var p problems
	identity := g.checkSource(&p)
	if len(p) > 0 {
		return nil, p.err()
	}
	if len(fragment.Jobs) == 0 {
		return nil, nil
	}
	if len(g.Jobs)+len(fragment.Jobs) > MaxJobs {
		return nil, (&problems{fmt.Sprintf("planner %q: fragment would make %d jobs, more than the limit of %d", planner.Name, len(g.Jobs)+len(fragment.Jobs), MaxJobs)}).err()
	}
	checkPlannerLabels(planner, fragment.Jobs, &p)
	if len(p) == 0 {
		normalizeJobs(fragment.Jobs, g.Jobs, g.Source, identity, &p)
	}
	if err := p.err(); err != nil {
		for i := range err.(*ValidationError).Problems {
			err.(*ValidationError).Problems[i] = fmt.Sprintf("planner %q: %s", planner.Name, err.(*ValidationError).Problems[i])
		}
		return nil, err
	}
	g.Jobs = append(g.Jobs, fragment.Jobs...)
	return fragment.Jobs, nil
}

// checkPlannerLabels requires every fragment job to carry each of the
// planner's labels with the planner's value (see Splice).
func checkPlannerLabels(planner *Job, jobs []*Job, p *problems) {
	if len(planner.Labels) == 0 {
		return
	}
	keys := make([]string, 0, len(planner.Labels))
	for k := range planner.Labels {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for i, j := range jobs {
		if j == nil {
			continue // normalizeJobs reports it
		}
		for _, k := range keys {
			want := planner.Labels[k]
			got, ok := j.Labels[k]
			switch {
			case !ok:
				p.add("job %q: missing label %s=%q required by its planner (fragment jobs must keep the planner's labels)", jobName(j, i), k, truncate(want))
			case got != want:
				p.add("job %q: label %s=%q differs from its planner's %s=%q (fragment jobs must keep the planner's labels)", jobName(j, i), k, truncate(got), k, truncate(want))
			}
		}
	}
}

// jobName names a job in a message before its name is validated.
func jobName(j *Job, i int) string {
	if j.Name == "" {
		return fmt.Sprintf("#%d", i)
	}
	return truncate(j.Name)
}

// checkSource validates the source and returns its identity, the string
// hashed into SourceAll jobs' IDs.
func (g *Graph) checkSource(p *problems) string {
	s := &g.Source
	switch {
	case s.Repo != "" || s.Revision != "":
		if len(s.Files) > 0 {
			p.add("source: set repo and revision, or files, not both")
		}
		if !validRepoURL(s.Repo) {
			p.add("source: repo %q is not an http, https or file URL", truncate(s.Repo))
		}
		if !revisionRE.MatchString(s.Revision) {
			p.add("source: revision %q is not a full commit hash (resolve branch names first)", truncate(s.Revision))
		}
		// The revision alone names the tree: the same commit fetched
		// from two mirrors is the same source.
		return "git:" + s.Revision
	case len(s.Files) > 0:
		if len(s.Files) > MaxFiles {
			p.add("source: %d files, more than the limit of %d", len(s.Files), MaxFiles)
			return ""
		}
		sort.Slice(s.Files, func(i, j int) bool { return s.Files[i].Path < s.Files[j].Path })
		for i, f := range s.Files {
			if err := checkRelPath(f.Path); err != nil {
				p.add("source: file %q: %v", truncate(f.Path), err)
			}
			if !IsDigest(f.Digest) {
				p.add("source: file %q: digest %q is not a hex SHA-256", truncate(f.Path), truncate(f.Digest))
			}
			if f.Size < 0 {
				p.add("source: file %q: negative size", truncate(f.Path))
			}
			if i > 0 {
				prev := s.Files[i-1].Path
				if prev == f.Path {
					p.add("source: file %q listed twice", truncate(f.Path))
				} else if strings.HasPrefix(f.Path, prev+"/") {
					p.add("source: %q is a file and a directory", truncate(prev))
				}
			}
		}
		return "files:" + s.ManifestDigest()
	}
	return "none"
}

// ManifestDigest returns the SHA-256 of the canonical JSON of the files
// (sorted by path), which names an uploaded source.
func (s *Source) ManifestDigest() string {
	b, _ := json.Marshal(s.Files)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// IsGit reports whether the source is a git revision.
func (s *Source) IsGit() bool { return s.Revision != "" }

func validRepoURL(u string) bool {
	if len(u) > MaxNameLen || strings.ContainsAny(u, " \t\r\n\x00") {
		return false
	}
	for _, prefix := range []string{"http://", "https://", "file:///"} {
		if strings.HasPrefix(u, prefix) && len(u) > len(prefix) {
			return true
		}
	}
	return false
}

// checkRelPath accepts a clean, slash-separated, relative path that stays
// inside its root.
func checkRelPath(p string) error {
	switch {
	case p == "":
		return fmt.Errorf("empty path")
	case len(p) > MaxNameLen:
		return fmt.Errorf("path longer than %d bytes", MaxNameLen)
	case !utf8.ValidString(p) || strings.ContainsAny(p, "\x00\\\n\r"):
		return fmt.Errorf("path has invalid characters")
	case strings.HasPrefix(p, "/"):
		return fmt.Errorf("absolute path")
	case p == ".." || strings.HasPrefix(p, "../") || strings.Contains(p, "/../") || strings.HasSuffix(p, "/.."):
		return fmt.Errorf("path escapes its directory with ..")
	case path.Clean(p) != p || p == ".":
		return fmt.Errorf("path is not clean (want %q)", path.Clean(p))
	}
	return nil
}

func truncate(s string) string {
	if len(s) > 80 {
		return s[:77] + "..."
	}
	return s
}

// normalizeJobs validates jobs and computes their IDs; existing are
// already normalized jobs that jobs may depend on (for fragments).
func normalizeJobs(jobs, existing []*Job, src Source, identity string, p *problems) error {
	byName := map[string]*Job{}
	byID := map[string]*Job{}
	for _, j := range existing {
		byName[j.Name] = j
		byID[j.ID] = j
	}
	inBatch := map[*Job]int{}
	for i, j := range jobs {
		if j == nil {
			p.add("job %d: null", i)
			continue
		}
		inBatch[j] = i
		name := j.Name
		switch {
		case name == "":
			p.add("job %d: missing name", i)
			continue
		case len(name) > MaxNameLen || !utf8.ValidString(name) || strings.ContainsAny(name, "\x00\n\r{}"):
			p.add("job %d: bad name %q (printable, no braces, at most %d bytes)", i, truncate(name), MaxNameLen)
			continue
		case IsID(name):
			p.add("job %q: a name must not look like a job ID", name)
			continue
		}
		if other, dup := byName[name]; dup {
			if _, fresh := inBatch[other]; fresh && other != j {
				p.add("job %q: duplicate name", name)
			} else {
				p.add("job %q: name already used in the graph", name)
			}
			continue
		}
		byName[name] = j
		if j.ID != "" {
			if !IsID(j.ID) {
				p.add("job %q: id %q is not 64 hex digits", name, truncate(j.ID))
			} else if _, dup := byID[j.ID]; dup {
				p.add("job %q: duplicate id %s", name, j.ID)
			} else {
				byID[j.ID] = j
			}
		}
	}
	if len(*p) > 0 {
		return p.err()
	}
	for _, j := range jobs {
		checkJob(j, src, p)
	}
	if len(*p) > 0 {
		return p.err()
	}
	// Resolve dependencies to jobs.
	resolve := func(ref string) *Job {
		if d, ok := byName[ref]; ok {
			return d
		}
		return byID[ref]
	}
	deps := make(map[*Job][]*Job, len(jobs))
	for _, j := range jobs {
		seen := map[*Job]bool{}
		for _, ref := range j.Deps {
			d := resolve(ref)
			switch {
			case d == nil:
				p.add("job %q: unknown dependency %q", j.Name, truncate(ref))
			case d == j:
				p.add("job %q: depends on itself", j.Name)
			case seen[d]:
				p.add("job %q: dependency %q listed twice", j.Name, d.Name)
			default:
				seen[d] = true
				deps[j] = append(deps[j], d)
			}
		}
		for _, ref := range placeholderDeps(j) {
			d := resolve(ref)
			if d == nil || !seen[d] {
				p.add("job %q: {{DEP:%s}} does not name one of its dependencies", j.Name, truncate(ref))
			}
		}
	}
	if len(*p) > 0 {
		return p.err()
	}
	order, cyc := topoSort(jobs, deps, inBatch)
	if cyc != nil {
		names := make([]string, len(cyc))
		for i, c := range cyc {
			names[i] = fmt.Sprintf("%q", c.Name)
		}
		p.add("job %q: dependency cycle: %s", cyc[0].Name, strings.Join(names, " -> "))
		return p.err()
	}
	for _, j := range order {
		// Rewrite references to IDs; dependencies are already final.
		ids := make([]string, len(deps[j]))
		for i, d := range deps[j] {
			ids[i] = d.ID
		}
		j.Deps = ids
		for i := range j.Commands {
			c := &j.Commands[i]
			rw := func(s string) string {
				if !strings.Contains(s, "{{DEP:") {
					return s
				}
				return placeholderRE.ReplaceAllStringFunc(s, func(m string) string {
					inner := m[2 : len(m)-2]
					if ref, ok := strings.CutPrefix(inner, "DEP:"); ok {
						return "{{DEP:" + resolve(ref).ID + "}}"
					}
					return m
				})
			}
			for k := range c.Argv {
				c.Argv[k] = rw(c.Argv[k])
			}
			for k := range c.Env {
				c.Env[k] = rw(c.Env[k])
			}
			c.Dir = rw(c.Dir)
		}
		if j.Labels != nil && len(j.Labels) == 0 {
			j.Labels = nil
		}
		id := ComputeID(j, identity)
		if j.ID != "" && j.ID != id {
			p.add("job %q: id %s does not match its content (want %s)", j.Name, j.ID, id)
			continue
		}
		if j.ID == "" {
			if other, dup := byID[id]; dup && other != j {
				p.add("job %q: same content, hence same ID, as job %q", j.Name, other.Name)
				continue
			}
			byID[id] = j
		}
		j.ID = id
	}
	return p.err()
}

// placeholderDeps returns the x of every {{DEP:x}} in the job's commands.
func placeholderDeps(j *Job) []string {
	var refs []string
	scan := func(s string) {
		if !strings.Contains(s, "{{DEP:") {
			return
		}
		for _, m := range placeholderRE.FindAllStringSubmatch(s, -1) {
			if ref, ok := strings.CutPrefix(m[1], "DEP:"); ok {
				refs = append(refs, ref)
			}
		}
	}
	for _, c := range j.Commands {
		for _, a := range c.Argv {
			scan(a)
		}
		for _, e := range c.Env {
			scan(e)
		}
		scan(c.Dir)
	}
	return refs
}

// checkJob validates one job's own fields.
func checkJob(j *Job, src Source, p *problems) {
	name := j.Name
	switch j.Mode() {
	case SourceAll, SourceNone:
		if len(j.Inputs) > 0 {
			p.add("job %q: inputs are only meaningful with source_mode inputs", name)
		}
	case SourceInputs:
		if len(j.Inputs) == 0 {
			p.add("job %q: source_mode inputs needs at least one input", name)
		}
	default:
		p.add("job %q: unknown source_mode %q (want all, inputs or none)", name, truncate(string(j.SourceMode)))
	}
	if j.Mode() != SourceNone && src.Revision == "" && len(src.Files) == 0 {
		p.add("job %q: needs a source but the graph has none (use source_mode none)", name)
	}
	seenInput := map[string]bool{}
	for i := range j.Inputs {
		in := &j.Inputs[i]
		if err := checkRelPath(in.Path); err != nil {
			p.add("job %q: input %q: %v", name, truncate(in.Path), err)
			continue
		}
		if seenInput[in.Path] {
			p.add("job %q: input %q listed twice", name, in.Path)
		}
		seenInput[in.Path] = true
		switch {
		case len(src.Files) > 0:
			d, ok := filesDigest(src.Files, in.Path)
			if !ok {
				p.add("job %q: input %q is not in the uploaded source", name, in.Path)
			} else if in.Digest != "" && in.Digest != d {
				p.add("job %q: input %q: digest %s does not match the uploaded source", name, in.Path, truncate(in.Digest))
			} else {
				in.Digest = d
			}
		case in.Digest == "":
			p.add("job %q: input %q needs a digest (the source is a git revision)", name, in.Path)
		case len(in.Digest) > 128 || strings.ContainsAny(in.Digest, " \n\x00"):
			p.add("job %q: input %q: bad digest", name, in.Path)
		}
	}
	sort.Slice(j.Inputs, func(a, b int) bool { return j.Inputs[a].Path < j.Inputs[b].Path })
	if len(j.Commands) == 0 {
		p.add("job %q: no commands", name)
	}
	if len(j.Commands) > MaxCommands {
		p.add("job %q: %d commands, more than the limit of %d", name, len(j.Commands), MaxCommands)
		return
	}
	for i, c := range j.Commands {
		where := lazyWhere{name, i + 1}
		switch {
		case c.WriteFile != nil && (len(c.Argv) > 0 || len(c.Env) > 0 || c.Dir != ""):
			p.add("%s: set argv or write_file, not both", where)
		case c.WriteFile != nil:
			if err := checkRelPath(c.WriteFile.Path); err != nil {
				p.add("%s: write_file path %q escapes the output directory or is invalid: %v", where, truncate(c.WriteFile.Path), err)
			}
		case len(c.Argv) == 0 || c.Argv[0] == "":
			p.add("%s: empty command", where)
		default:
			for _, a := range c.Argv {
				if strings.ContainsRune(a, 0) {
					p.add("%s: argument contains a NUL byte", where)
				}
				checkPlaceholders(a, where, p)
			}
			for _, e := range c.Env {
				k, v, ok := strings.Cut(e, "=")
				if !ok || !envKeyRE.MatchString(k) || strings.ContainsRune(v, 0) {
					p.add("%s: env entry %q is not KEY=VALUE", where, truncate(e))
				}
				checkPlaceholders(v, where, p)
			}
			if err := checkDir(c.Dir); err != nil {
				p.add("%s: dir %q: %v", where, truncate(c.Dir), err)
			}
			checkPlaceholders(c.Dir, where, p)
		}
	}
	for k, v := range j.Labels {
		if len(k) > MaxNameLen || !labelKeyRE.MatchString(k) {
			p.add("job %q: bad label name %q", name, truncate(k))
		}
		if len(v) > MaxNameLen || strings.ContainsAny(v, "\x00\n\r,=") {
			p.add("job %q: label %s: bad value %q", name, k, truncate(v))
		}
	}
	if j.Timeout < 0 || Duration(MaxTimeout) < j.Timeout {
		p.add("job %q: timeout %s out of range (0 to %s)", name, j.Timeout, MaxTimeout)
	}
}

// lazyWhere names a command in messages; formatted only when a problem is
// found, since validating thousands of good jobs should not format
// thousands of strings.
type lazyWhere struct {
	job string
	cmd int
}

func (w lazyWhere) String() string { return fmt.Sprintf("job %q: command %d", w.job, w.cmd) }

// checkPlaceholders accepts only the documented placeholders.
func checkPlaceholders(s string, where lazyWhere, p *problems) {
	if !strings.Contains(s, "{{") {
		return
	}
	for _, m := range placeholderRE.FindAllStringSubmatch(s, -1) {
		switch inner := m[1]; {
		case inner == "OUTPUT_DIR", inner == "SOURCE_DIR":
		case strings.HasPrefix(inner, "DEP:") && len(inner) > 4:
		default:
			p.add("%s: unknown placeholder {{%s}} (want OUTPUT_DIR, SOURCE_DIR or DEP:<job>)", where, truncate(inner))
		}
	}
}

// checkDir accepts an empty dir, a relative clean path (under the source
// directory), or a placeholder followed by an optional relative path.
func checkDir(d string) error {
	if d == "" {
		return nil
	}
	rest := d
	if strings.HasPrefix(d, "{{") {
		end := strings.Index(d, "}}")
		if end < 0 {
			return fmt.Errorf("unterminated placeholder")
		}
		rest = strings.TrimPrefix(d[end+2:], "/")
		if rest == "" {
			return nil
		}
	}
	if strings.Contains(rest, "{{") {
		return fmt.Errorf("a placeholder may only start the directory")
	}
	return checkRelPath(rest)
}

// filesDigest returns the digest of path in a sorted manifest: the file's
// own digest, or for a directory the SHA-256 of the manifest entries under
// it (paths relative to it).
func filesDigest(files []File, p string) (string, bool) {
	i := sort.Search(len(files), func(i int) bool { return files[i].Path >= p })
	if i < len(files) && files[i].Path == p {
		return files[i].Digest, true
	}
	prefix := p + "/"
	i = sort.Search(len(files), func(i int) bool { return files[i].Path >= prefix })
	var sub []File
	for ; i < len(files) && strings.HasPrefix(files[i].Path, prefix); i++ {
		f := files[i]
		f.Path = strings.TrimPrefix(f.Path, prefix)
		sub = append(sub, f)
	}
	if len(sub) == 0 {
		return "", false
	}
	b, _ := json.Marshal(sub)
	sum := sha256.Sum256(b)
	return "tree:" + hex.EncodeToString(sum[:]), true
}

// topoSort orders jobs so that dependencies (within jobs) come first. On a
// cycle it returns one cycle, starting and ending with the same job.
func topoSort(jobs []*Job, deps map[*Job][]*Job, inBatch map[*Job]int) (order, cycle []*Job) {
	const (
		white = iota
		grey
		black
	)
	color := make(map[*Job]int, len(jobs))
	order = make([]*Job, 0, len(jobs))
	// Iterative DFS, so that a deep chain of 100,000 jobs cannot overflow
	// the stack.
	type frame struct {
		j *Job
		i int
	}
	for _, root := range jobs {
		if color[root] != white {
			continue
		}
		stack := []frame{{root, 0}}
		color[root] = grey
		for len(stack) > 0 {
			top := &stack[len(stack)-1]
			ds := deps[top.j]
			if top.i < len(ds) {
				d := ds[top.i]
				top.i++
				if _, local := inBatch[d]; !local {
					continue
				}
				switch color[d] {
				case grey:
					for k := range stack {
						if stack[k].j == d {
							for _, f := range stack[k:] {
								cycle = append(cycle, f.j)
							}
							return nil, append(cycle, d)
						}
					}
				case white:
					color[d] = grey
					stack = append(stack, frame{d, 0})
				}
				continue
			}
			color[top.j] = black
			order = append(order, top.j)
			stack = stack[:len(stack)-1]
		}
	}
	return order, nil
}

// idVersion is hashed first, so that a change of the ID scheme never
// reuses results computed under the old one.
const idVersion = "tryd-job-v2"

// ComputeID returns the job's ID: the hex SHA-256 of a canonical encoding
// of everything that determines its output: the commands (with dependency
// placeholders as IDs), environment, working directories, source mode and
// the source identity (for SourceAll) or the inputs' paths and digests
// (for SourceInputs), the dependencies' IDs (sorted), the required labels
// (sorted) and the planner flag. Name, timeout and cacheable are left out:
// they change how a job is run or shown, not what it produces. j.Deps must
// already hold IDs.
//
// The encoding writes every string with its length first and every list
// with its count first, so that no two different jobs encode alike.
func ComputeID(j *Job, sourceIdentity string) string {
	h := sha256.New()
	var buf [binary.MaxVarintLen64]byte
	num := func(n int) { h.Write(buf[:binary.PutUvarint(buf[:], uint64(n))]) }
	str := func(s string) {
		num(len(s))
		io.WriteString(h, s)
	}
	strs := func(ss []string) {
		num(len(ss))
		for _, s := range ss {
			str(s)
		}
	}
	str(idVersion)
	str(string(j.Mode()))
	switch j.Mode() {
	case SourceAll:
		str(sourceIdentity)
	case SourceInputs:
		num(len(j.Inputs))
		for _, in := range j.Inputs {
			str(in.Path)
			str(in.Digest)
		}
	}
	deps := slices.Clone(j.Deps)
	slices.Sort(deps)
	strs(deps)
	num(len(j.Commands))
	for _, c := range j.Commands {
		if c.WriteFile != nil {
			str("write")
			str(c.WriteFile.Path)
			str(c.WriteFile.Content)
			str(strconv.FormatBool(c.WriteFile.Executable))
			continue
		}
		str("exec")
		strs(c.Argv)
		strs(c.Env)
		str(c.Dir)
	}
	keys := make([]string, 0, len(j.Labels))
	for k := range j.Labels {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	num(len(keys))
	for _, k := range keys {
		str(k)
		str(j.Labels[k])
	}
	str(strconv.FormatBool(j.Planner))
	return hex.EncodeToString(h.Sum(nil))
}
