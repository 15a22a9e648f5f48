package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"cloud.google.com/go/storage"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"

	"github.com/tryd-ci/tryd/internal/config"
	"github.com/tryd-ci/tryd/internal/httpserver"
	"github.com/tryd-ci/tryd/internal/logging"
	"github.com/tryd-ci/tryd/maintner"
	"github.com/tryd-ci/tryd/maintner/logsync"
	"github.com/tryd-ci/tryd/maintner/mutlog"
	"github.com/tryd-ci/tryd/maintner/mutlog/gcsstore"
	"github.com/tryd-ci/tryd/maintner/query"
)

func runMaintnerd(ctx context.Context, a *app, args []string) error {
	fs, cf := a.flags("maintnerd", "[flags]", `Maintnerd keeps the corpus: it appends GitHub and Gerrit activity to the
mutation log, serves the log to followers at /logs (compatible with
golang.org/x/build/maintner) and answers the query API under /api/.

The log lives on local disk under <data-dir>/maintner/log unless the config
says maintnerd.store: gcs (with gcs_bucket and gcs_prefix).

The query API requires a bearer token when maintnerd.api_token (or
--api-token-file) is set; on a non-loopback address maintnerd refuses to
start without one unless maintnerd.public_api (or --public-api) says the
API is meant to be public. /logs is always open: followers such as
golang.org/x/build's maintner cannot send a token.`)
	listen := fs.String("listen", "", "address to serve HTTP on (default: maintnerd.listen from the config, else 127.0.0.1:8081; set listen: \":8081\" to serve every interface)")
	pubsub := fs.String("pubsubhelper", "", "base URL of a pubsubhelper to take nudges from (default: pubsubhelper.url from the config; \"off\" for none); without one, only reconciliation passes sync")
	pubsubToken := fs.String("pubsubhelper-token", "", "subscriber token for --pubsubhelper, file:/path or env:NAME (default: pubsubhelper.subscriber_token from the config)")
	apiTokenFile := fs.String("api-token-file", "", "file holding the bearer token the query API (/api/) requires (default: maintnerd.api_token from the config)")
	publicAPI := fs.Bool("public-api", false, "serve the query API without a token on a non-loopback address (default: maintnerd.public_api from the config)")
	if err := a.parse(fs, cf, args); err != nil {
		return err
	}
	addr := *listen
	if addr == "" {
		addr = a.cfg.Maintnerd.Listen
	}
	if addr == "" {
		addr = "127.0.0.1:8081"
	}
	apiToken, err := maintnerdAPIToken(*apiTokenFile, a.cfg)
	if err != nil {
		return err
	}
	public := *publicAPI || a.cfg.Maintnerd.PublicAPI
	if apiToken == "" && !public && !loopbackListen(addr) {
		return fmt.Errorf("maintnerd: the query API would be open to anyone on %s: set maintnerd.api_token (or --api-token-file), or maintnerd.public_api: true (or --public-api) if it is meant to be public", addr)
	}
	m, err := startMaintnerd(ctx, a, a.log)
	if err != nil {
		return err
	}
	defer m.Close()
	if apiToken != "" {
		if err := m.requireAPIToken(apiToken); err != nil {
			return err
		}
	}
	// Ingestion (GitHub, Gerrit) appends through the corpus; it stops
	// before the log closes.
	ing, err := newIngestion(a, m.corpus, m.registry, logging.For(a.log, "maintnerd"))
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	var ingWG sync.WaitGroup
	defer ingWG.Wait()
	defer cancel()
	ingWG.Add(1)
	go func() { defer ingWG.Done(); ing.Run(ctx) }()
	if *pubsub == "" {
		*pubsub = a.cfg.Pubsubhelper.URL
	}
	a.log.WithField("component", "maintnerd").WithField("tracking", ing.trackedSummary()).Info("ingestion started")
	if *pubsub != "" && *pubsub != "off" {
		token, err := pubsubhelperToken(*pubsubToken, a.cfg)
		if err != nil {
			return err
		}
		ingWG.Add(1)
		go func() {
			defer ingWG.Done()
			err := ing.Subscribe(ctx, *pubsub, token, filepath.Join(a.dataDir, "maintner", "pubsubhelper-cursor.json"))
			if err != nil && ctx.Err() == nil {
				a.log.WithError(err).Error("maintnerd: pubsubhelper subscription ended")
			}
		}()
	}
	srv, err := httpserver.New(httpserver.Options{Addr: addr, Handler: m.Handler(), Component: "maintnerd", Log: a.log, Registry: m.registry})
	if err != nil {
		return err
	}
	return srv.Serve(ctx)
}

// maintnerd is a running corpus server: the open log, the corpus loaded
// from it, and the HTTP handlers. tryd dev embeds one.
type maintnerd struct {
	log    *mutlog.Log
	corpus *maintner.Corpus
	logs   *logsync.Handler
	query  *query.Handler
	// api is the query API as served: query, wrapped by
	// requireAPIToken when a token is configured.
	api      http.Handler
	registry *prometheus.Registry
	closeFns []func() error
}

// openStore opens the log store the configuration selects.
func openStore(ctx context.Context, a *app, log logrus.FieldLogger) (mutlog.Store, func() error, error) {
	switch strings.ToLower(a.cfg.Maintnerd.Store) {
	case "", "disk":
		dir, err := a.subdir("maintner/log")
		if err != nil {
			return nil, nil, err
		}
		st, err := mutlog.NewDiskStore(dir)
		return st, func() error { return nil }, err
	case "gcs":
		if a.cfg.Maintnerd.GCSBucket == "" {
			return nil, nil, errors.New("maintnerd: store gcs needs maintnerd.gcs_bucket")
		}
		client, err := storage.NewClient(ctx)
		if err != nil {
			return nil, nil, fmt.Errorf("maintnerd: GCS client: %w", err)
		}
		st, err := gcsstore.New(gcsstore.Options{Client: client, Bucket: a.cfg.Maintnerd.GCSBucket, Prefix: a.cfg.Maintnerd.GCSPrefix, Log: log})
		if err != nil {
			client.Close()
			return nil, nil, err
		}
		return st, client.Close, nil
	}
	return nil, nil, fmt.Errorf("maintnerd: unknown store %q (want disk or gcs)", a.cfg.Maintnerd.Store)
}

// startMaintnerd opens the log, loads the corpus from it and builds the
// handlers. Ingestion appends through m.corpus.Log.
func startMaintnerd(ctx context.Context, a *app, base logrus.FieldLogger) (*maintnerd, error) {
	log := logging.For(base, "maintnerd")
	m := &maintnerd{registry: httpserver.NewRegistry()}
	st, closeStore, err := openStore(ctx, a, log)
	if err != nil {
		return nil, err
	}
	m.closeFns = append(m.closeFns, closeStore)
	m.log, err = mutlog.Open(ctx, mutlog.Options{Store: st, Log: log, Registry: m.registry})
	if err != nil {
		m.Close()
		return nil, err
	}
	m.closeFns = append([]func() error{m.log.Close}, m.closeFns...)
	m.corpus, err = maintner.New(maintner.Options{Appender: m.log, Logger: log, Registry: m.registry})
	if err != nil {
		m.Close()
		return nil, err
	}
	start := time.Now()
	size, err := m.corpus.LoadLog(ctx, m.log)
	if err != nil {
		m.Close()
		return nil, fmt.Errorf("maintnerd: load corpus: %w", err)
	}
	log.WithFields(logrus.Fields{"bytes": size, "records": m.corpus.Stats().Records, "dur": time.Since(start).Round(time.Millisecond).String()}).Info("corpus loaded")
	m.logs, err = logsync.NewHandler(logsync.HandlerOptions{Source: m.log, Path: "/logs", Log: log, Registry: m.registry})
	if err != nil {
		m.Close()
		return nil, err
	}
	m.query = query.NewHandler(m.corpus, log)
	return m, nil
}

// requireAPIToken makes the query API require token (see
// query.RequireToken); /logs stays open.
func (m *maintnerd) requireAPIToken(token string) error {
	h, err := query.RequireToken(m.query, []string{token})
	if err != nil {
		return fmt.Errorf("maintnerd: api token: %w", err)
	}
	m.api = h
	return nil
}

// maintnerdAPIToken returns the query API's token, for maintnerd and for
// its clients (dashboard, tryd corpus): the content of tokenFile when
// given, else maintnerd.api_token; "" when neither is set.
func maintnerdAPIToken(tokenFile string, cfg *config.Config) (string, error) {
	t, err := secretOrFile(tokenFile, cfg.Maintnerd.APIToken)
	if err != nil {
		return "", fmt.Errorf("maintnerd api token: %w", err)
	}
	return t, nil
}

// Handler routes /logs to the log server, /api/ to the query API.
func (m *maintnerd) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/logs", m.logs)
	mux.Handle("/logs/", m.logs)
	api := m.api
	if api == nil {
		api = m.query
	}
	mux.Handle("/api/", api)
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		s := m.corpus.Stats()
		fmt.Fprintf(w, "tryd maintnerd\n\nlog: %d bytes, %d records\n\n/logs           mutation log (x/build maintner compatible)\n/api/stats      corpus statistics\n/api/github/repos, /api/gerrit/projects, /api/gerrit/changes?project=...\n",
			m.log.Size(), s.Records)
	})
	return mux
}

// Close closes the log and the store client.
func (m *maintnerd) Close() error {
	var errs []error
	for _, f := range m.closeFns {
		if err := f(); err != nil {
			errs = append(errs, err)
		}
	}
	m.closeFns = nil
	return errors.Join(errs...)
}
