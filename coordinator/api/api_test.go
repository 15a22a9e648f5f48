package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestErrorKindsRoundTrip(t *testing.T) {
	tests := []struct {
		name   string
		err    error
		status int
	}{
		{"bad request", fmt.Errorf("submit: %w", ErrBadRequest), 400},
		{"unauthorized", ErrUnauthorized, 401},
		{"not found", fmt.Errorf("build 3: %w", ErrNotFound), 404},
		{"conflict", ErrConflict, 409},
		{"unknown worker", ErrUnknownWorker, 410},
		{"missing", &MissingError{Digests: []string{"abc"}}, 412},
		{"too large", ErrTooLarge, 413},
		{"unavailable", ErrUnavailable, 503},
		{"internal", errors.New("boom"), 500},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				WriteError(w, tt.err)
			}))
			defer srv.Close()
			c, err := NewClient(srv.URL, "tok", nil)
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.Build(context.Background(), 1)
			var e *Error
			if !errors.As(err, &e) || e.Status != tt.status {
				t.Fatalf("err = %v, want status %d", err, tt.status)
			}
			for _, k := range kinds {
				if errors.Is(tt.err, k.err) != errors.Is(err, k.err) {
					t.Errorf("errors.Is(%v) differs across the wire", k.err)
				}
			}
			if tt.status == 412 && (len(e.Missing) != 1 || e.Missing[0] != "abc") {
				t.Errorf("missing digests lost: %v", e.Missing)
			}
		})
	}
}

func TestNewClientRejectsBadURL(t *testing.T) {
	for _, u := range []string{"", "ftp://x", "http://", "::"} {
		if _, err := NewClient(u, "t", nil); err == nil {
			t.Errorf("NewClient(%q) succeeded", u)
		}
	}
}

func TestPriorityRank(t *testing.T) {
	if !(PriorityTry.Rank() < PriorityPostSubmit.Rank() && PriorityPostSubmit.Rank() < PriorityPeriodic.Rank()) {
		t.Error("priorities out of order")
	}
	if Priority("urgent").Rank() != -1 {
		t.Error("unknown priority accepted")
	}
}
