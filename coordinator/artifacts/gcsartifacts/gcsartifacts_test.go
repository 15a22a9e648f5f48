package gcsartifacts

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/storage"
	"github.com/fsouza/fake-gcs-server/fakestorage"
	"google.golang.org/api/googleapi"

	"github.com/tryd-ci/tryd/coordinator/artifacts"
	"github.com/tryd-ci/tryd/coordinator/artifacts/storetest"
)

// fakeGCS starts fake-gcs-server in-process with one bucket; with
// listen, it also serves HTTP on 127.0.0.1 (for signed URLs).
func fakeGCS(t *testing.T, bucket string, listen bool) *fakestorage.Server {
	t.Helper()
	opts := fakestorage.Options{NoListener: true}
	if listen {
		opts = fakestorage.Options{Host: "127.0.0.1", Port: 0, Scheme: "http", PublicHost: "127.0.0.1"}
	}
	srv, err := fakestorage.NewServerWithOptions(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	srv.CreateBucketWithOpts(fakestorage.CreateBucketOpts{Name: bucket})
	return srv
}

// TestConformance runs the suite the disk store passes.
func TestConformance(t *testing.T) {
	for _, prefix := range []string{"", "artifacts/"} {
		t.Run(fmt.Sprintf("prefix=%q", prefix), func(t *testing.T) {
			storetest.Run(t, func(t *testing.T) artifacts.Store {
				srv := fakeGCS(t, "tryd-artifacts", false)
				s, err := New(Options{Client: srv.Client(), Bucket: "tryd-artifacts", Prefix: prefix})
				if err != nil {
					t.Fatal(err)
				}
				return s
			})
		})
	}
}

func TestOptions(t *testing.T) {
	srv := fakeGCS(t, "b", false)
	tests := []struct {
		name string
		opts Options
	}{
		{"no client", Options{Bucket: "b"}},
		{"no bucket", Options{Client: srv.Client()}},
		{"prefix without slash", Options{Client: srv.Client(), Bucket: "b", Prefix: "x"}},
		{"negative expiry", Options{Client: srv.Client(), Bucket: "b", URLExpiry: -time.Second}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := New(tt.opts); err == nil {
				t.Fatal("New accepted bad options")
			}
		})
	}
}

// TestStatRemembers: Stat answers for a blob found less than StatTTL ago
// without asking GCS, so a blob another replica deleted still reads as
// present until then; this Store's own Delete forgets at once, Put asks
// GCS (a blob deleted elsewhere is uploaded again), and a negative
// StatTTL always asks.
func TestStatRemembers(t *testing.T) {
	ctx := context.Background()
	data := []byte("remembered")
	d := storetest.Digest(data)
	type step struct {
		name string
		do   func(a, b *Store, advance func()) error
		// found is whether a's Stat then reports the blob.
		found bool
	}
	put := func(s *Store) error { return s.Put(ctx, d, bytes.NewReader(data)) }
	tests := []struct {
		name  string
		ttl   time.Duration
		steps []step
	}{
		{"deleted by another replica", 0, []step{
			{"put", func(a, b *Store, _ func()) error { return put(a) }, true},
			{"deleted elsewhere", func(a, b *Store, _ func()) error { return b.Delete(ctx, d) }, true},
			{"ttl passed", func(a, b *Store, advance func()) error { advance(); return nil }, false},
		}},
		{"found by stat", 0, []step{
			{"put elsewhere", func(a, b *Store, _ func()) error { return put(b) }, true},
			{"deleted elsewhere", func(a, b *Store, _ func()) error { return b.Delete(ctx, d) }, true},
			{"ttl passed", func(a, b *Store, advance func()) error { advance(); return nil }, false},
		}},
		{"own delete", 0, []step{
			{"put", func(a, b *Store, _ func()) error { return put(a) }, true},
			{"deleted here", func(a, b *Store, _ func()) error { return a.Delete(ctx, d) }, false},
		}},
		{"put uploads again", 0, []step{
			{"put", func(a, b *Store, _ func()) error { return put(a) }, true},
			{"deleted elsewhere", func(a, b *Store, _ func()) error { return b.Delete(ctx, d) }, true},
			{"put again", func(a, b *Store, _ func()) error {
				if err := put(a); err != nil {
					return err
				}
				_, err := b.Stat(ctx, d) // b remembers nothing: asks GCS
				return err
			}, true},
		}},
		{"not remembered", -1, []step{
			{"put", func(a, b *Store, _ func()) error { return put(a) }, true},
			{"deleted elsewhere", func(a, b *Store, _ func()) error { return b.Delete(ctx, d) }, false},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := fakeGCS(t, "b", false)
			now := time.Unix(1e9, 0)
			clock := func() time.Time { return now }
			a, err := New(Options{Client: srv.Client(), Bucket: "b", StatTTL: tt.ttl, Now: clock})
			if err != nil {
				t.Fatal(err)
			}
			b, err := New(Options{Client: srv.Client(), Bucket: "b", StatTTL: -1})
			if err != nil {
				t.Fatal(err)
			}
			advance := func() { now = now.Add(a.opts.StatTTL) }
			for _, st := range tt.steps {
				if err := st.do(a, b, advance); err != nil {
					t.Fatalf("%s: %v", st.name, err)
				}
				size, err := a.Stat(ctx, d)
				switch {
				case st.found && (err != nil || size != int64(len(data))):
					t.Fatalf("%s: Stat = %d, %v; want %d", st.name, size, err, len(data))
				case !st.found && !errors.Is(err, artifacts.ErrNotFound):
					t.Fatalf("%s: Stat = %d, %v; want ErrNotFound", st.name, size, err)
				}
			}
		})
	}
}

// TestObjectLayout checks the object names and that a mismatched upload
// left no object behind (not even under another name).
func TestObjectLayout(t *testing.T) {
	srv := fakeGCS(t, "b", false)
	s, err := New(Options{Client: srv.Client(), Bucket: "b", Prefix: "arts/"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	data := []byte("layout")
	d := storetest.Digest(data)
	if err := s.Put(ctx, d, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, storetest.Digest([]byte("x")), strings.NewReader("y")); !errors.Is(err, artifacts.ErrDigestMismatch) {
		t.Fatalf("mismatch = %v", err)
	}
	objs, _, err := srv.ListObjectsWithOptions("b", fakestorage.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) != 1 || objs[0].Name != "arts/"+d {
		var names []string
		for _, o := range objs {
			names = append(names, o.Name)
		}
		t.Errorf("objects = %v, want [arts/%s]", names, d)
	}
	// A second Put of existing content with wrong bytes is refused too.
	if err := s.Put(ctx, d, strings.NewReader("other")); !errors.Is(err, artifacts.ErrDigestMismatch) {
		t.Errorf("mismatched re-put = %v", err)
	}
}

// TestSignedURL fetches a blob with plain HTTP (no credentials) through a
// V4 signed URL from fake-gcs-server listening on loopback. The emulator
// does not check signatures, so this tests the URL's shape and path, not
// GCS's verification of it.
func TestSignedURL(t *testing.T) {
	srv := fakeGCS(t, "b", true)
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pemKey := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	u, _ := url.Parse(srv.URL())
	// The library dates the signature by the real clock, so Now is real.
	now := time.Now().UTC()
	s, err := New(Options{
		Client: srv.Client(), Bucket: "b", Prefix: "arts/", SignedURLs: true,
		Sign: &storage.SignedURLOptions{GoogleAccessID: "tryd@example.iam.gserviceaccount.com", PrivateKey: pemKey,
			Hostname: u.Host, Insecure: true, Style: storage.PathStyle()},
		URLExpiry: 10 * time.Minute,
		Now:       func() time.Time { return now },
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	data := []byte("output archive bytes")
	d := storetest.Digest(data)
	if err := s.Put(ctx, d, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	signed, err := s.SignedURL(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	su, err := url.Parse(signed)
	if err != nil {
		t.Fatal(err)
	}
	q := su.Query()
	if su.Path != "/b/arts/"+d || q.Get("X-Goog-Algorithm") != "GOOG4-RSA-SHA256" || (q.Get("X-Goog-Expires") != "600" && q.Get("X-Goog-Expires") != "599") ||
		!strings.HasPrefix(q.Get("X-Goog-Date"), now.Format("20060102T")) || q.Get("X-Goog-Signature") == "" {
		t.Errorf("signed URL = %s", signed)
	}
	resp, err := http.Get(signed)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !bytes.Equal(got, data) {
		t.Errorf("GET signed URL = %d %q", resp.StatusCode, got)
	}
	if _, err := s.SignedURL(ctx, "../x"); !errors.Is(err, artifacts.ErrBadDigest) {
		t.Errorf("SignedURL(bad) = %v", err)
	}
	plain, _ := New(Options{Client: srv.Client(), Bucket: "b"})
	if _, err := plain.SignedURL(ctx, d); !errors.Is(err, ErrNoSigning) {
		t.Errorf("SignedURL without SignedURLs = %v", err)
	}
}

// TestPutSizes uploads blobs on both sides of the one-chunk limit, and
// checks that small ones do not cost the writer's default 16 MiB buffer
// each: they are most uploads, and those buffers were most of what a
// busy coordinator allocated.
func TestPutSizes(t *testing.T) {
	srv := fakeGCS(t, "b", false)
	s, err := New(Options{Client: srv.Client(), Bucket: "b"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, size := range []int{0, 1, 1000, googleapi.MinUploadChunkSize, googleapi.MinUploadChunkSize + 1, 3 << 20} {
		t.Run(strconv.Itoa(size), func(t *testing.T) {
			data := make([]byte, size)
			rand.Read(data)
			d := storetest.Digest(data)
			if size > 0 {
				bad := bytes.Clone(data)
				bad[size-1]++
				if err := s.Put(ctx, d, bytes.NewReader(bad)); !errors.Is(err, artifacts.ErrDigestMismatch) {
					t.Fatalf("Put of mismatched content = %v, want ErrDigestMismatch", err)
				}
			}
			if err := s.Put(ctx, d, bytes.NewReader(data)); err != nil {
				t.Fatal(err)
			}
			rc, n, err := s.Open(ctx, d)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(rc)
			rc.Close()
			if err != nil || n != int64(size) || !bytes.Equal(got, data) {
				t.Fatalf("Open = %d bytes (size %d), err %v; want the %d bytes put", len(got), n, err, size)
			}
		})
	}

	const puts = 20
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for i := range puts {
		data := []byte(fmt.Sprintf("small blob %d", i))
		if err := s.Put(ctx, storetest.Digest(data), bytes.NewReader(data)); err != nil {
			t.Fatal(err)
		}
	}
	runtime.ReadMemStats(&after)
	// Including the in-process emulator's allocations.
	if per := (after.TotalAlloc - before.TotalAlloc) / puts; per > 2<<20 {
		t.Errorf("a small Put allocated %d KiB, want at most 2 MiB", per>>10)
	}
}
