package replicatest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"

	"cloud.google.com/go/storage"
	"github.com/fsouza/fake-gcs-server/fakestorage"

	"github.com/tryd-ci/tryd/coordinator"
	"github.com/tryd-ci/tryd/coordinator/api"
	"github.com/tryd-ci/tryd/coordinator/artifacts/gcsartifacts"
	"github.com/tryd-ci/tryd/coordinator/state/sqlite"
)

// TestArtifactRedirectToSignedURL: with a GCS artifact store that signs
// URLs, GET /api/artifacts/{digest} sends the reader to GCS (307 to a
// signed URL) and the coordinator client, as workers use it, fetches the
// blob from the emulator directly; an absent blob is still a 404 from
// the coordinator. The emulator does not verify signatures.
func TestArtifactRedirectToSignedURL(t *testing.T) {
	gcs, err := fakestorage.NewServerWithOptions(fakestorage.Options{Host: "127.0.0.1", Port: 0, Scheme: "http", PublicHost: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(gcs.Stop)
	gcs.CreateBucketWithOpts(fakestorage.CreateBucketOpts{Name: "arts"})
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	gu, _ := url.Parse(gcs.URL())
	// A client of the emulator as tryd coordinator makes it: reads use
	// the emulator's host, which the emulator serves as its public host.
	t.Setenv("STORAGE_EMULATOR_HOST", gu.Host)
	gc, err := storage.NewClient(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gc.Close() })
	arts, err := gcsartifacts.New(gcsartifacts.Options{
		Client: gc, Bucket: "arts", SignedURLs: true,
		Sign: &storage.SignedURLOptions{GoogleAccessID: "tryd@example.iam.gserviceaccount.com",
			PrivateKey: pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}),
			Hostname:   gu.Host, Insecure: true, Style: storage.PathStyle()},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	dir := t.TempDir()
	st, err := sqlite.Open(ctx, sqlite.Options{Path: filepath.Join(dir, "state.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	const clientToken = "client-token-0123456789"
	c, err := coordinator.New(ctx, coordinator.Options{Store: st, Artifacts: arts, Dir: dir, ClientToken: clientToken})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	srv := httptest.NewServer(c.Handler())
	t.Cleanup(srv.Close)

	data := []byte("an output archive")
	sum := sha256.Sum256(data)
	d := hex.EncodeToString(sum[:])
	if err := arts.Put(ctx, d, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}

	// The raw answer: a redirect to the emulator.
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/api/artifacts/"+d, nil)
	req.Header.Set("Authorization", "Bearer "+clientToken)
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noFollow.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusTemporaryRedirect || !strings.HasPrefix(loc, gcs.URL()+"/arts/"+d+"?") || !strings.Contains(loc, "X-Goog-Signature=") {
		t.Errorf("GET artifact = %d Location %q", resp.StatusCode, loc)
	}

	// Through the client, following the redirect.
	cl, err := api.NewClient(srv.URL, clientToken, nil)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := cl.GetArtifact(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(rc)
	rc.Close()
	if !bytes.Equal(got, data) {
		t.Errorf("GetArtifact = %q", got)
	}
	missing := strings.Repeat("0", 64)
	if _, err := cl.GetArtifact(ctx, missing); !errors.Is(err, api.ErrNotFound) {
		t.Errorf("GetArtifact(missing) = %v, want ErrNotFound", err)
	}
	if ok, err := cl.HasArtifact(ctx, d); err != nil || !ok {
		t.Errorf("HasArtifact = %v, %v (HEAD is answered here)", ok, err)
	}
}
