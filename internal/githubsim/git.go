package githubsim

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/cgi"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/tryd-ci/tryd/internal/gitexec"
)

// logWriter sends a subprocess's standard error to the log.
type logWriter struct{ log logrus.FieldLogger }

func (w logWriter) Write(p []byte) (int, error) {
	w.log.WithField("stderr", strings.TrimSpace(string(p))).Debug("git http-backend")
	return len(p), nil
}

// zeroSHA is how GitHub (and git) write "no commit" in push events.
const zeroSHA = "0000000000000000000000000000000000000000"

// gitEnv is the environment every git subprocess runs with: no user or
// system configuration, so the host's git settings cannot change what the
// simulator writes.
func gitEnv(extra ...string) []string {
	env := []string{
		"GIT_CONFIG_NOSYSTEM=1",
		"GIT_CONFIG_GLOBAL=" + os.DevNull,
		"GIT_TERMINAL_PROMPT=0",
		"LANG=C", "LC_ALL=C",
	}
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "PATH=") || strings.HasPrefix(kv, "HOME=") || strings.HasPrefix(kv, "TMPDIR=") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

// runGit runs git in dir and returns its trimmed standard output.
func runGit(ctx context.Context, gitPath, dir string, stdin []byte, env []string, args ...string) (string, error) {
	c := gitexec.Cmd{Git: gitPath, Dir: dir, Env: gitEnv(env...), Args: args}
	if stdin != nil {
		c.Stdin = bytes.NewReader(stdin)
	}
	out, err := c.Output(ctx)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(out)), nil
}

// Commit describes a commit the simulator writes on a branch: files to
// add or replace, paths to delete, a message and an author (a user login;
// empty means the repository owner).
type Commit struct {
	// Files maps slash-separated paths to their new contents.
	Files map[string]string
	// Deletes lists paths to remove.
	Deletes []string
	// Message is the commit message (default "Update files").
	Message string
	// Author is the login of the author and pusher; "" means the
	// repository owner.
	Author string
}

// checkPath rejects file paths that would escape the tree or touch git's
// own metadata.
func checkPath(p string) error {
	if p == "" || strings.HasPrefix(p, "/") || path.Clean(p) != p || strings.Contains(p, "\\") {
		return fmt.Errorf("%w: bad file path %q: want a clean relative slash-separated path", ErrInvalid, p)
	}
	for _, part := range strings.Split(p, "/") {
		if part == ".." || part == "." || strings.EqualFold(part, ".git") {
			return fmt.Errorf("%w: bad file path %q", ErrInvalid, p)
		}
	}
	return nil
}

// checkBranch rejects branch names git would refuse or that could be read
// as options.
func checkBranch(name string) error {
	if name == "" || strings.HasPrefix(name, "-") || strings.HasPrefix(name, "refs/") ||
		strings.ContainsAny(name, " ~^:?*[\\\x00\x7f") || strings.Contains(name, "..") ||
		strings.HasSuffix(name, "/") || strings.HasSuffix(name, ".lock") || strings.Contains(name, "@{") {
		return fmt.Errorf("bad branch name %q", name)
	}
	return nil
}

// gitIdent is the author/committer identity and date of a written commit.
type gitIdent struct {
	name, email string
	when        time.Time
}

func (id gitIdent) env() []string {
	date := strconv.FormatInt(id.when.Unix(), 10) + " +0000"
	return []string{
		"GIT_AUTHOR_NAME=" + id.name, "GIT_AUTHOR_EMAIL=" + id.email, "GIT_AUTHOR_DATE=" + date,
		"GIT_COMMITTER_NAME=" + id.name, "GIT_COMMITTER_EMAIL=" + id.email, "GIT_COMMITTER_DATE=" + date,
	}
}

// resolve returns the commit a revision names in the bare repository at
// dir, or "" if there is none.
func resolve(ctx context.Context, gitPath, dir, rev string) (string, error) {
	if rev == "" || strings.HasPrefix(rev, "-") || strings.ContainsAny(rev, " \x00\n") {
		return "", nil
	}
	out, err := runGit(ctx, gitPath, dir, nil, nil, "rev-parse", "--verify", "--quiet", rev+"^{commit}")
	if gitexec.ExitCode(err) > 0 {
		return "", nil // git answered: no such commit
	}
	if err != nil {
		return "", err
	}
	return out, nil
}

// writeCommit writes a commit whose tree is parent's tree (empty if parent
// is "") with c applied, and returns its SHA. It does not move any ref.
func writeCommit(ctx context.Context, gitPath, dir string, parents []string, c Commit, id gitIdent) (string, error) {
	for p := range c.Files {
		if err := checkPath(p); err != nil {
			return "", err
		}
	}
	for _, p := range c.Deletes {
		if err := checkPath(p); err != nil {
			return "", err
		}
	}
	tmp, err := os.MkdirTemp("", "githubsim-index-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	env := []string{"GIT_INDEX_FILE=" + filepath.Join(tmp, "index")}
	if len(parents) > 0 {
		if _, err := runGit(ctx, gitPath, dir, nil, env, "read-tree", parents[0]); err != nil {
			return "", err
		}
	}
	var info strings.Builder
	for _, p := range sortedKeys(c.Files) {
		sha, err := runGit(ctx, gitPath, dir, []byte(c.Files[p]), nil, "hash-object", "-w", "--stdin")
		if err != nil {
			return "", err
		}
		fmt.Fprintf(&info, "100644 %s\t%s\n", sha, p)
	}
	// Mode 0 removes an entry (update-index --index-info; --force-remove
	// would need a work tree).
	for _, p := range c.Deletes {
		fmt.Fprintf(&info, "0 %s\t%s\n", zeroSHA, p)
	}
	if info.Len() > 0 {
		if _, err := runGit(ctx, gitPath, dir, []byte(info.String()), env, "update-index", "--add", "--index-info"); err != nil {
			return "", err
		}
	}
	tree, err := runGit(ctx, gitPath, dir, nil, env, "write-tree")
	if err != nil {
		return "", err
	}
	return commitTree(ctx, gitPath, dir, tree, parents, c.Message, id)
}

func commitTree(ctx context.Context, gitPath, dir, tree string, parents []string, msg string, id gitIdent) (string, error) {
	args := []string{"commit-tree", tree}
	for _, p := range parents {
		args = append(args, "-p", p)
	}
	if msg == "" {
		msg = "Update files"
	}
	return runGit(ctx, gitPath, dir, []byte(msg+"\n"), id.env(), args...)
}

// setRef points ref at sha whatever it pointed at, or deletes it when sha
// is "".
func setRef(ctx context.Context, gitPath, dir, ref, sha string) error {
	args := []string{"update-ref", ref, sha}
	if sha == "" {
		args = []string{"update-ref", "-d", ref}
	}
	_, err := runGit(ctx, gitPath, dir, nil, nil, args...)
	return err
}

// updateRef moves ref from old ("" if it must not exist) to sha.
func updateRef(ctx context.Context, gitPath, dir, ref, sha, old string) error {
	if old == "" {
		old = zeroSHA
	}
	_, err := runGit(ctx, gitPath, dir, nil, nil, "update-ref", ref, sha, old)
	return err
}

// errConflict: the merge of a pull request's head into its base
// conflicts.
var errConflict = errors.New("merge conflict")

// mergeCommit writes the merge of head into base (git merge-tree, as a
// server does without a worktree) and returns the merge commit, or an
// error wrapping errConflict.
func mergeCommit(ctx context.Context, gitPath, dir, base, head, msg string, id gitIdent) (string, error) {
	out, err := runGit(ctx, gitPath, dir, nil, nil, "merge-tree", "--write-tree", "--no-messages", base, head)
	if err != nil {
		if gitexec.ExitCode(err) == 1 {
			return "", fmt.Errorf("%w: %s into %s", errConflict, head, base)
		}
		return "", err
	}
	tree, _, _ := strings.Cut(out, "\n")
	return commitTree(ctx, gitPath, dir, tree, []string{base, head}, msg, id)
}

// gitCommitInfo is what push payloads say about one commit.
type gitCommitInfo struct {
	sha, tree, message      string
	name, email             string // author
	when                    time.Time
	cname, cemail           string // committer
	cwhen                   time.Time
	parents                 []string
	added, removed, changed []string
}

// commitsBetween lists the commits reachable from after but not before
// (oldest first, at most 20 as GitHub), with their file changes, for push
// payloads. For a new branch (before ""), as on GitHub, only commits no
// other branch has are listed.
func commitsBetween(ctx context.Context, gitPath, dir, branch, before, after string) ([]gitCommitInfo, error) {
	args := []string{"rev-list", "--reverse", "--max-count=20"}
	if before != "" && before != zeroSHA {
		args = append(args, before+".."+after)
	} else {
		args = append(args, after, "--not", "--exclude="+branch, "--branches")
	}
	out, err := runGit(ctx, gitPath, dir, nil, nil, args...)
	if err != nil {
		return nil, err
	}
	var list []gitCommitInfo
	for _, sha := range strings.Fields(out) {
		ci, err := commitInfo(ctx, gitPath, dir, sha)
		if err != nil {
			return nil, err
		}
		st, err := runGit(ctx, gitPath, dir, nil, nil, "diff-tree", "-r", "--no-commit-id", "--name-status", "--root", "-m", "--first-parent", sha)
		if err != nil {
			return nil, err
		}
		for _, line := range strings.Split(st, "\n") {
			status, p, ok := strings.Cut(line, "\t")
			if !ok {
				continue
			}
			switch status[:1] {
			case "A":
				ci.added = append(ci.added, p)
			case "D":
				ci.removed = append(ci.removed, p)
			default:
				ci.changed = append(ci.changed, p)
			}
		}
		list = append(list, ci)
	}
	return list, nil
}

// commitInfo reads a commit's tree, author, date and message.
func commitInfo(ctx context.Context, gitPath, dir, sha string) (gitCommitInfo, error) {
	meta, err := runGit(ctx, gitPath, dir, nil, nil, "show", "-s", "--format=%T%x00%an%x00%ae%x00%at%x00%cn%x00%ce%x00%ct%x00%P%x00%B", sha)
	if err != nil {
		return gitCommitInfo{}, err
	}
	f := strings.SplitN(meta, "\x00", 9)
	if len(f) != 9 {
		return gitCommitInfo{}, fmt.Errorf("git show %s: unexpected output", sha)
	}
	at, _ := strconv.ParseInt(f[3], 10, 64)
	ct, _ := strconv.ParseInt(f[6], 10, 64)
	return gitCommitInfo{sha: sha, tree: f[0], name: f[1], email: f[2], when: time.Unix(at, 0).UTC(),
		cname: f[4], cemail: f[5], cwhen: time.Unix(ct, 0).UTC(), parents: strings.Fields(f[7]),
		message: strings.TrimRight(f[8], "\n"), added: []string{}, removed: []string{}, changed: []string{}}, nil
}

// diffStats returns the number of commits, added and deleted lines and
// changed files between base and head (three-dot, as a pull request shows).
func diffStats(ctx context.Context, gitPath, dir, base, head string) (commits, adds, dels, files int, err error) {
	n, err := runGit(ctx, gitPath, dir, nil, nil, "rev-list", "--count", base+".."+head)
	if err != nil {
		return 0, 0, 0, 0, err
	}
	commits, _ = strconv.Atoi(n)
	out, err := runGit(ctx, gitPath, dir, nil, nil, "diff", "--numstat", base+"..."+head)
	if err != nil {
		return 0, 0, 0, 0, err
	}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 3 {
			continue
		}
		a, _ := strconv.Atoi(f[0])
		d, _ := strconv.Atoi(f[1])
		adds += a
		dels += d
		files++
	}
	return commits, adds, dels, files, nil
}

// gitHandler serves the bare repositories under root over git's smart HTTP
// protocol through git http-backend (read-only: pushes go through the Go
// API, which also sends the webhooks).
func gitHandler(gitPath, root string, log logrus.FieldLogger) http.Handler {
	return &cgi.Handler{
		Path:   gitPath,
		Stderr: logWriter{log},
		Args:   []string{"http-backend"},
		Root:   "/",
		Env: append(gitEnv(),
			"GIT_PROJECT_ROOT="+root,
			"GIT_HTTP_EXPORT_ALL=1",
		),
	}
}

// branchesContaining lists up to 10 branches (name and tip) whose history
// contains sha, as status events report them.
func branchesContaining(ctx context.Context, gitPath, dir, sha string) ([][2]string, error) {
	out, err := runGit(ctx, gitPath, dir, nil, nil, "for-each-ref", "--count=10", "--contains", sha, "--format=%(refname:strip=2) %(objectname)", "refs/heads/")
	if err != nil {
		return nil, err
	}
	var list [][2]string
	for _, line := range strings.Split(out, "\n") {
		if name, tip, ok := strings.Cut(line, " "); ok {
			list = append(list, [2]string{name, tip})
		}
	}
	return list, nil
}
