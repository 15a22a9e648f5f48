package client

import "time"

// Refs is the body of GET /<repo>/refs: every mirrored ref of the
// repository (or those under the requested prefix) and the object it
// points at.
type Refs struct {
	Repo string            `json:"repo"`
	Refs map[string]string `json:"refs"`
}

// Status is the body of GET /debug?format=json: the state of every
// mirrored repository. It never contains credentials: URLs are shown
// without user information.
type Status struct {
	Repos []RepoStatus `json:"repos"`
	// Cache is the state of the tarball cache.
	Cache CacheStatus `json:"cache"`
}

// CacheStatus is the state of the tarball cache.
type CacheStatus struct {
	Bytes    int64 `json:"bytes"`
	Limit    int64 `json:"limit"`
	Entries  int   `json:"entries"`
	Building int   `json:"building"`
}

// RepoStatus is the state of one mirrored repository.
type RepoStatus struct {
	Name string `json:"name"`
	// URL is the upstream URL with any user information removed.
	URL string `json:"url"`
	// Cloned reports whether the bare mirror exists.
	Cloned bool `json:"cloned"`
	// Fetching reports whether a fetch is running now.
	Fetching bool `json:"fetching"`
	// LastFetch is when the last fetch (or clone) finished, successful or
	// not; LastDuration is how long it took.
	LastFetch    time.Time     `json:"last_fetch,omitzero"`
	LastDuration time.Duration `json:"last_duration_ns"`
	// LastSuccess is when a fetch last succeeded.
	LastSuccess time.Time `json:"last_success,omitzero"`
	// LastError is the error of the last fetch, or empty if it succeeded.
	LastError string `json:"last_error,omitempty"`
	// Failures counts consecutive failed fetches; it drives the backoff.
	Failures int `json:"failures"`
	// Fetches counts fetches since the process started.
	Fetches int64 `json:"fetches"`
	// Push is the push mirror's state, if one is configured.
	Push *PushStatus `json:"push,omitempty"`
}

// PushStatus is the state of a repository's push mirror.
type PushStatus struct {
	// URL is the push URL with any user information removed.
	URL         string    `json:"url"`
	LastPush    time.Time `json:"last_push,omitzero"`
	LastSuccess time.Time `json:"last_success,omitzero"`
	LastError   string    `json:"last_error,omitempty"`
	Pushes      int64     `json:"pushes"`
}

// Response headers of GET /<repo>.tar.gz.
const (
	// HeaderCommit carries the full object name of the commit archived.
	HeaderCommit = "X-Tryd-Commit"
	// HeaderTree carries the tree object name, the tarball cache key.
	// Tarballs of commits with equal trees have equal contents.
	HeaderTree = "X-Tryd-Tree"
	// HeaderCache is "hit" when the tarball came from the cache, "miss"
	// when this request built it, "join" when it streamed a build that
	// another request had started.
	HeaderCache = "X-Tryd-Cache"
)
