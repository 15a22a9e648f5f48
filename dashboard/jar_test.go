package dashboard_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
)

func newJar() http.CookieJar {
	j, _ := cookiejar.New(nil)
	return j
}

func jsonDecode(r io.Reader, v any) error { return json.NewDecoder(r).Decode(v) }
