package main

import (
	"context"
	"flag"
	"fmt"
	"strings"
	"time"

	"cloud.google.com/go/storage"

	"github.com/tryd-ci/tryd/coordinator"
	"github.com/tryd-ci/tryd/coordinator/artifacts/gcsartifacts"
	"github.com/tryd-ci/tryd/coordinator/state/pgstate"
	"github.com/tryd-ci/tryd/internal/config"
	"github.com/tryd-ci/tryd/internal/logging"
)

// scaleOut holds the flags of coordinator.database: postgres and
// coordinator.artifacts: gcs (issue 12).
type scaleOut struct {
	advertiseURL *string
	leaseTTL     *time.Duration
	gcsPrefix    *string
	signedURLs   *bool
}

func (a *app) scaleOutFlags(fs *flag.FlagSet) *scaleOut {
	return &scaleOut{
		advertiseURL: fs.String("advertise-url", "", "with database postgres: this replica's URL as other replicas reach it, e.g. http://$(POD_IP):8084 (default: coordinator.url)"),
		leaseTTL:     fs.Duration("lease-ttl", 15*time.Second, "with database postgres: how long a dead replica's builds wait before another replica resumes them"),
		gcsPrefix:    fs.String("gcs-prefix", "artifacts/", "with artifacts gcs: object name prefix (empty or ending in /)"),
		signedURLs:   fs.Bool("gcs-signed-urls", false, "with artifacts gcs: send readers of artifacts to GCS with signed URLs (the credentials must be able to sign)"),
	}
}

// openPostgres opens the shared PostgreSQL state and returns the replica
// options that go with it.
func openPostgres(ctx context.Context, a *app, cc config.Coordinator, so *scaleOut) (*pgstate.Store, *coordinator.ReplicaOptions, error) {
	dsn, err := cc.PostgresDSN.Value()
	if err != nil {
		return nil, nil, fmt.Errorf("coordinator: postgres_dsn: %w", err)
	}
	u := *so.advertiseURL
	if u == "" {
		u = cc.URL
	}
	if u == "" {
		return nil, nil, fmt.Errorf("coordinator: database postgres needs --advertise-url or coordinator.url (other replicas forward calls there)")
	}
	store, err := pgstate.Open(ctx, pgstate.Options{DSN: dsn, Log: logging.For(a.log, "coordinator")})
	if err != nil {
		return nil, nil, err
	}
	return store, &coordinator.ReplicaOptions{URL: u, LeaseTTL: *so.leaseTTL}, nil
}

// openGCSArtifacts opens the artifact store in GCS with application
// default credentials (STORAGE_EMULATOR_HOST points the client at an
// emulator). The returned close function closes the client.
func openGCSArtifacts(ctx context.Context, cc config.Coordinator, so *scaleOut) (*gcsartifacts.Store, func(), error) {
	client, err := storage.NewClient(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("coordinator: GCS client: %w", err)
	}
	s, err := gcsartifacts.New(gcsartifacts.Options{Client: client, Bucket: cc.GCSBucket, Prefix: *so.gcsPrefix, SignedURLs: *so.signedURLs})
	if err != nil {
		client.Close()
		return nil, nil, err
	}
	if *so.signedURLs {
		// Fail at start, not on every artifact read, when the
		// credentials cannot sign.
		if _, err := s.SignedURL(ctx, strings.Repeat("0", 64)); err != nil {
			client.Close()
			return nil, nil, fmt.Errorf("coordinator: --gcs-signed-urls: %w", err)
		}
	}
	return s, func() { client.Close() }, nil
}
