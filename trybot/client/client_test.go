package client

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"testing"
)

func TestParseListOptions(t *testing.T) {
	for _, tc := range []struct {
		name  string
		query string
		want  ListOptions
		bad   bool
	}{
		{name: "empty", query: ""},
		{name: "all", query: "review=gerrit&repo=go&change=12&patch_set=3&state=failed&limit=7&before=99",
			want: ListOptions{Review: "gerrit", Repo: "go", Change: 12, PatchSet: 3, State: StateFailed, Limit: 7, Before: 99}},
		{name: "bad review", query: "review=svn", bad: true},
		{name: "bad state", query: "state=done", bad: true},
		{name: "negative change", query: "change=-1", bad: true},
		{name: "change overflow", query: "change=99999999999", bad: true},
		{name: "limit too large", query: "limit=100000", bad: true},
		{name: "not a number", query: "before=x", bad: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q, _ := url.ParseQuery(tc.query)
			got, err := ParseListOptions(q)
			if tc.bad {
				if err == nil {
					t.Errorf("accepted: %+v", got)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %+v, %v; want %+v", got, err, tc.want)
			}
			back, err := ParseListOptions(got.Query())
			if err != nil || !reflect.DeepEqual(back, got) {
				t.Errorf("Query round trip: %+v, %v", back, err)
			}
		})
	}
}

func FuzzParseListOptions(f *testing.F) {
	for _, s := range []string{"", "change=1&limit=2", "state=running&review=github", "before=-1", "limit=%zz"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		q, err := url.ParseQuery(s)
		if err != nil {
			return
		}
		o, err := ParseListOptions(q)
		if err != nil {
			return
		}
		if o.Limit > MaxLimit || o.Limit < 0 || o.Change < 0 || o.Before < 0 {
			t.Fatalf("accepted %+v", o)
		}
		back, err := ParseListOptions(o.Query())
		if err != nil || !reflect.DeepEqual(back, o) {
			t.Fatalf("round trip of %+v: %+v, %v", o, back, err)
		}
	})
}

func TestClientErrors(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/api/runs/1":
			w.WriteHeader(http.StatusNotFound)
			w.Write([]byte(`{"error":"run 1 not found"}`))
		case "/api/runs":
			w.WriteHeader(http.StatusBadRequest)
			w.Write([]byte(`{"error":"bad limit"}`))
		default:
			w.WriteHeader(http.StatusServiceUnavailable)
			w.Write([]byte("down"))
		}
	}))
	defer srv.Close()
	c, err := New(srv.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := c.Run(ctx, 1); !errors.Is(err, ErrNotFound) {
		t.Errorf("Run(1) error %v, want ErrNotFound", err)
	}
	if _, err := c.Runs(ctx, ListOptions{}); !errors.Is(err, ErrBadRequest) {
		t.Errorf("Runs error %v, want ErrBadRequest", err)
	}
	if _, err := c.Run(ctx, 2); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Run(2) error %v, want ErrUnavailable", err)
	}
	if _, err := New("ftp://x", nil); err == nil {
		t.Error("New accepted a non-HTTP URL")
	}
}
