package maintner

import (
	"fmt"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tryd-ci/tryd/maintner/trydpb"
)

// extOfProto is what decoding should make of a record that
// proto.Unmarshal decodes to x.
func extOfProto(x *trydpb.Ext) dExt {
	stamp := func(t *timestamppb.Timestamp) dStamp {
		return dStamp{set: t != nil, sec: t.GetSeconds(), nsec: t.GetNanos()}
	}
	b := func(s string) []byte { return []byte(s) }
	var d dExt
	if r := x.GetGithubRepo(); r != nil {
		d.repo = dRepoExt{set: true, owner: b(r.GetOwner()), repo: b(r.GetRepo()), id: r.GetId(), defaultBranch: b(r.GetDefaultBranch()), private: r.GetPrivate()}
	}
	if p := x.GetGithubPullRequest(); p != nil {
		d.pr = dPR{set: true, owner: b(p.GetOwner()), repo: b(p.GetRepo()), number: p.GetNumber(),
			headSHA: b(p.GetHeadSha()), headRef: b(p.GetHeadRef()), headRepo: b(p.GetHeadRepo()), baseSHA: b(p.GetBaseSha()), baseRef: b(p.GetBaseRef()),
			merged: dBoolWrap{set: p.GetMerged() != nil, val: p.GetMerged().GetVal()}, draft: dBoolWrap{set: p.GetDraft() != nil, val: p.GetDraft().GetVal()},
			mergeCommitSHA: b(p.GetMergeCommitSha()), mergedAt: stamp(p.GetMergedAt()), updated: stamp(p.GetUpdated())}
	}
	for _, s := range x.GetGithubStatus() {
		d.statuses = append(d.statuses, dStatus{owner: b(s.GetOwner()), repo: b(s.GetRepo()), sha: b(s.GetSha()), context: b(s.GetContext()), state: b(s.GetState()),
			description: b(s.GetDescription()), targetURL: b(s.GetTargetUrl()), id: s.GetId(), creatorID: s.GetCreatorId(), created: stamp(s.GetCreated()), updated: stamp(s.GetUpdated())})
	}
	for _, r := range x.GetGithubCheckRun() {
		d.checkRuns = append(d.checkRuns, dCheckRun{owner: b(r.GetOwner()), repo: b(r.GetRepo()), id: r.GetId(), appID: r.GetAppId(), headSHA: b(r.GetHeadSha()),
			name: b(r.GetName()), status: b(r.GetStatus()), conclusion: b(r.GetConclusion()), detailsURL: b(r.GetDetailsUrl()), externalID: b(r.GetExternalId()),
			started: stamp(r.GetStarted()), completed: stamp(r.GetCompleted())})
	}
	return d
}

// decodeExtFields decodes the extension fields of a payload as
// decoded.decode does.
func decodeExtFields(payload []byte) (dExt, error) {
	var d dExt
	var f field
	it := fieldIter{b: payload}
	for it.next(&f) {
		if f.num >= 100 {
			if err := d.field(&f); err != nil {
				return d, err
			}
		}
	}
	return d, it.err
}

func extSeeds(t testing.TB) [][]byte {
	ts := func(s int64, n int32) *timestamppb.Timestamp { return &timestamppb.Timestamp{Seconds: s, Nanos: n} }
	var seeds [][]byte
	for _, x := range []*trydpb.Ext{
		{GithubRepo: &trydpb.GithubRepo{Owner: "golang", Repo: "go", Id: 23096959, DefaultBranch: "master", Private: true}},
		{GithubPullRequest: &trydpb.GithubPullRequest{Owner: "golang", Repo: "go", Number: 7, HeadSha: "1111111111111111111111111111111111111111", HeadRef: "fix",
			HeadRepo: "bob/go", BaseSha: "2222222222222222222222222222222222222222", BaseRef: "master", Draft: &trydpb.BoolWrap{}, Updated: ts(1700000000, 5)}},
		{GithubPullRequest: &trydpb.GithubPullRequest{Owner: "golang", Repo: "go", Number: 7, Merged: &trydpb.BoolWrap{Val: true},
			MergeCommitSha: "3333333333333333333333333333333333333333", MergedAt: ts(1700000100, 0)}},
		{GithubStatus: []*trydpb.GithubStatus{{Owner: "golang", Repo: "go", Sha: "1111111111111111111111111111111111111111", Context: "tryd/linux-amd64",
			State: "success", Description: "build finished", TargetUrl: "https://tryd.example/run/1", Id: 9, CreatorId: 3, Created: ts(1, 2), Updated: ts(3, 4)}},
			GithubCheckRun: []*trydpb.GithubCheckRun{{Owner: "golang", Repo: "go", Id: 44, HeadSha: "1111111111111111111111111111111111111111", Name: "tryd",
				Status: "completed", Conclusion: "success", DetailsUrl: "https://tryd.example/run/1", ExternalId: "x", Started: ts(5, 6), Completed: ts(7, -8), AppId: 12}}},
	} {
		b, err := proto.Marshal(x)
		if err != nil {
			t.Fatal(err)
		}
		seeds = append(seeds, b)
	}
	// Singular messages repeated in one record merge.
	seeds = append(seeds, append(append([]byte(nil), seeds[1]...), seeds[2]...))
	return seeds
}

// FuzzExtMatchesProto checks that the hand-written decoder of tryd's
// extension fields agrees with proto.Unmarshal on every input: both
// refuse it, or both make the same values of it.
func FuzzExtMatchesProto(f *testing.F) {
	for _, s := range extSeeds(f) {
		f.Add(s)
	}
	f.Add([]byte{0xa2, 0x06, 0x02, 0xff, 0xfe}) // field 100, bytes, not a message
	f.Fuzz(func(t *testing.T, payload []byte) {
		var x trydpb.Ext
		perr := proto.UnmarshalOptions{DiscardUnknown: true}.Unmarshal(payload, &x)
		got, err := decodeExtFields(payload)
		if (err == nil) != (perr == nil) {
			t.Fatalf("decode error %v, proto.Unmarshal error %v", err, perr)
		}
		if err != nil {
			return
		}
		if g, w := fmt.Sprintf("%+v", got), fmt.Sprintf("%+v", extOfProto(&x)); g != w {
			t.Fatalf("decoded\n%s\nproto.Unmarshal made\n%s", g, w)
		}
	})
}
