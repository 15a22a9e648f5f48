package maintner_test

import (
	"context"
	"fmt"
	"path/filepath"
	"reflect"
	"testing"

	"golang.org/x/build/maintner/maintpb"

	"github.com/tryd-ci/tryd/maintner"
	"github.com/tryd-ci/tryd/maintner/corpusgen"
)

// derived is what a change's derivation produces, for comparing an
// incrementally derived change with a freshly derived one.
type derived struct {
	ChangeID, Branch, Subject, Topic, Status, Err string
	Owner                                         int32
	Created, Updated                              maintner.Time
	Private, WorkInProgress                       bool
	Hashtags                                      []string
	CurrentPatchSet                               int32
	PatchSets                                     []maintner.GerritPatchSet
	Messages                                      []maintner.GerritMessage
	Votes                                         []maintner.GerritVote
}

func derivedOf(ch *maintner.GerritChange) derived {
	return derived{ch.ChangeID, ch.Branch, ch.Subject, ch.Topic, ch.Status, ch.Err, ch.Owner, ch.Created, ch.Updated,
		ch.Private, ch.WorkInProgress, ch.Hashtags, ch.CurrentPatchSet, ch.PatchSets, ch.Messages, ch.Votes}
}

// snapshot derives every change of every project.
func snapshot(c *maintner.Corpus) map[string]derived {
	c.RLock()
	defer c.RUnlock()
	out := map[string]derived{}
	for _, p := range c.GerritProjects() {
		for _, ch := range p.Changes() {
			out[fmt.Sprintf("%s/%d", p.Name, ch.Number)] = derivedOf(ch)
		}
	}
	return out
}

// fresh applies payloads to a new corpus and derives every change once.
func fresh(t *testing.T, payloads [][]byte) map[string]derived {
	t.Helper()
	c := newCorpus(t, maintner.Options{})
	for _, p := range payloads {
		if err := c.Apply(p); err != nil {
			t.Fatal(err)
		}
	}
	return snapshot(c)
}

func marshalAll(t *testing.T, ms []*maintner.Mutation) [][]byte {
	t.Helper()
	var out [][]byte
	for _, m := range ms {
		p, err := m.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, p)
	}
	return out
}

// TestIncrementalDeriveMatchesReplay reads every change after every
// record, so each meta update is applied incrementally to the cached
// replay, and compares the result with a corpus that derives each change
// once from its whole history.
func TestIncrementalDeriveMatchesReplay(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "log")
	w, err := corpusgen.NewDirWriter(dir)
	if err != nil {
		t.Fatal(err)
	}
	payloads := marshalAll(t, corpusgen.Sample(false))
	if err := corpusgen.Generate(context.Background(), corpusgen.Options{Size: 1 << 20, Seed: 3, GerritShare: 0.8}, func(p []byte) error {
		payloads = append(payloads, p)
		return w.Write(p)
	}); err != nil {
		t.Fatal(err)
	}
	inc := newCorpus(t, maintner.Options{})
	for i, p := range payloads {
		if err := inc.Apply(p); err != nil {
			t.Fatal(err)
		}
		if i%7 == 0 {
			snapshot(inc)
		}
	}
	got, want := snapshot(inc), fresh(t, payloads)
	if len(want) < 10 {
		t.Fatalf("only %d changes generated", len(want))
	}
	for k, w := range want {
		if g := got[k]; !reflect.DeepEqual(g, w) {
			t.Errorf("change %s incrementally derived:\n%+v\nreplayed:\n%+v", k, g, w)
		}
	}
}

// TestDeriveAfterForcedMetaUpdate moves a meta ref to history that does
// not descend from the derived tip (a rewind to an ancestor, then another
// change's history entirely), as a force-push of a meta ref would: the
// change must be replayed from the new root, not patched.
func TestDeriveAfterForcedMetaUpdate(t *testing.T) {
	payloads := marshalAll(t, corpusgen.Sample(false))
	c := newCorpus(t, maintner.Options{})
	for _, p := range payloads {
		if err := c.Apply(p); err != nil {
			t.Fatal(err)
		}
	}
	c.RLock()
	p := c.GerritProject(corpusgen.SampleProject)
	ch := p.Change(1001)
	if ch.Err != "" || len(ch.Messages) < 3 {
		t.Fatalf("change 1001 = %+v", ch)
	}
	parent := p.Commit(ch.Meta).Parents[0]
	other := p.Change(1002).Meta
	c.RUnlock()
	for _, tc := range []struct {
		name string
		tip  string
	}{
		{"rewind to parent", parent.String()},
		{"other history", other.String()},
		{"forward again", ch.Meta.String()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := &maintner.Mutation{Base: &maintpb.Mutation{Gerrit: &maintpb.GerritMutation{
				Project: corpusgen.SampleProject,
				Refs:    []*maintpb.GitRef{{Ref: "refs/changes/01/1001/meta", Sha1: tc.tip}},
			}}}
			pl := marshalAll(t, []*maintner.Mutation{m})
			payloads = append(payloads, pl...)
			if err := c.Apply(pl[0]); err != nil {
				t.Fatal(err)
			}
			got, want := snapshot(c), fresh(t, payloads)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("after moving the meta ref:\n%+v\nreplayed:\n%+v", got, want)
			}
		})
	}
}
