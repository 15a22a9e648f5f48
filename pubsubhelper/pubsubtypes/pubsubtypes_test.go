package pubsubtypes

import (
	"encoding/json"
	"errors"
	"net/url"
	"reflect"
	"testing"
	"time"
)

func TestTimeJSON(t *testing.T) {
	for _, tc := range []struct {
		name string
		t    Time
		want string
	}{
		{"zero is null", Time{}, `null`},
		{"UTC with nanoseconds", Time(time.Date(2026, 3, 1, 12, 0, 0, 5, time.UTC)), `"2026-03-01T12:00:00.000000005Z"`},
		{"converted to UTC", Time(time.Date(2026, 3, 1, 13, 0, 0, 0, time.FixedZone("CET", 3600))), `"2026-03-01T12:00:00Z"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := json.Marshal(tc.t)
			if err != nil || string(b) != tc.want {
				t.Fatalf("Marshal = %s, %v; want %s", b, err, tc.want)
			}
			var back Time
			if err := json.Unmarshal(b, &back); err != nil || !back.T().Equal(tc.t.T()) {
				t.Errorf("round trip = %v, %v", back, err)
			}
		})
	}
	var tm Time
	if err := json.Unmarshal([]byte(`12`), &tm); err == nil {
		t.Error("a number was accepted as a time")
	}
	if err := json.Unmarshal([]byte(`"yesterday"`), &tm); err == nil {
		t.Error("a bad string was accepted as a time")
	}
}

func TestCursorQuery(t *testing.T) {
	c := Cursor{JournalID: "abc", Seq: 42, Time: Time(time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC))}
	v := url.Values{}
	c.Values(v)
	got, err := ParseCursor(v)
	if err != nil || got.JournalID != c.JournalID || got.Seq != c.Seq || !got.T().Equal(c.T()) {
		t.Errorf("round trip %+v → %v → %+v, %v", c, v, got, err)
	}
	for _, q := range []string{"after=nope", "afterseq=x", "afterseq=-3", "journal=" + string(make([]byte, 65))} {
		v, _ := url.ParseQuery(q)
		if _, err := ParseCursor(v); !errors.Is(err, ErrBadQuery) {
			t.Errorf("%s: err %v, want ErrBadQuery", q, err)
		}
	}
}

func TestFilter(t *testing.T) {
	gh := &Event{Source: SourceGitHub, Type: "pull_request", Server: "github", GitHub: &GitHubEvent{RepoOwner: "Golang", Repo: "Go"}}
	ge := &Event{Source: SourceGerrit, Type: "ref-updated", Server: "review", Gerrit: &GerritEvent{Project: "go", RefName: "refs/heads/master", Topic: ""}}
	gc := &Event{Source: SourceGerrit, Type: "topic-changed", Gerrit: &GerritEvent{Project: "go", Branch: "release", Topic: "gc"}}
	for _, tc := range []struct {
		name string
		q    string
		want []*Event
	}{
		{"none", "", []*Event{gh, ge, gc}},
		{"source", "source=gerrit", []*Event{ge, gc}},
		{"types", "type=pull_request,topic-changed", []*Event{gh, gc}},
		{"repeated type", "type=pull_request&type=ref-updated", []*Event{gh, ge}},
		{"repo is case-insensitive", "repo=golang/go", []*Event{gh}},
		{"project", "project=go", []*Event{ge, gc}},
		{"branch of a change or a ref", "branch=master", []*Event{ge}},
		{"topic", "topic=gc", []*Event{gc}},
		{"server", "server=review", []*Event{ge}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, _ := url.ParseQuery(tc.q)
			f, err := ParseFilter(v)
			if err != nil {
				t.Fatal(err)
			}
			var got []*Event
			for _, e := range []*Event{gh, ge, gc} {
				if f.Match(e) {
					got = append(got, e)
				}
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("matched %d events, want %d", len(got), len(tc.want))
			}
			back := url.Values{}
			f.Values(back)
			f2, err := ParseFilter(back)
			if err != nil || !reflect.DeepEqual(f, f2) {
				t.Errorf("Values round trip: %+v → %+v, %v", f, f2, err)
			}
		})
	}
	for _, q := range []string{"source=svn", "repo=golang", "repo=a/b/c", "repo=/x"} {
		v, _ := url.ParseQuery(q)
		if _, err := ParseFilter(v); !errors.Is(err, ErrBadQuery) {
			t.Errorf("%s: err %v, want ErrBadQuery", q, err)
		}
	}
}

// FuzzParseQuery feeds arbitrary query strings to the subscription query
// parsers: no panics, errors are ErrBadQuery, and what parses survives a
// round trip through Values.
func FuzzParseQuery(f *testing.F) {
	f.Add("after=2026-01-02T03:04:05Z&afterseq=3&journal=ab&source=github&type=push,issues&repo=o/r")
	f.Add("project=go&branch=master&topic=x&server=review")
	f.Add("type=%2C%2C&repo=%00/x")
	f.Fuzz(func(t *testing.T, q string) {
		v, err := url.ParseQuery(q)
		if err != nil {
			return
		}
		c, cerr := ParseCursor(v)
		fl, ferr := ParseFilter(v)
		for _, err := range []error{cerr, ferr} {
			if err != nil && !errors.Is(err, ErrBadQuery) {
				t.Fatalf("error not ErrBadQuery: %v", err)
			}
		}
		if cerr == nil {
			back := url.Values{}
			c.Values(back)
			c2, err := ParseCursor(back)
			if err != nil || c2.Seq != c.Seq || !c2.T().Equal(c.T()) || c2.JournalID != c.JournalID {
				t.Fatalf("cursor round trip %+v → %+v, %v", c, c2, err)
			}
		}
		if ferr == nil {
			back := url.Values{}
			fl.Values(back)
			if _, err := ParseFilter(back); err != nil {
				t.Fatalf("filter round trip %+v: %v", fl, err)
			}
			fl.Match(&Event{})
			fl.Match(&Event{GitHub: &GitHubEvent{}, Gerrit: &GerritEvent{}})
		}
	})
}
