package integration

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"testing"

	"github.com/sagaflow/sagaflow/internal/testenv"
)

// call sends a request to the API as the holder of key ("" for none) and
// decodes a JSON answer into out (when not nil). It returns the status.
func call(t testing.TB, key, method, path string, body any, out any) int {
	t.Helper()
	return callWithHeaders(t, key, method, path, body, out, nil)
}

// callWithHeaders is call with extra request headers.
func callWithHeaders(t testing.TB, key, method, path string, body any, out any, headers map[string]string) int {
	t.Helper()
	code, err := rawCall(key, method, path, body, out, headers)
	if err != nil {
		t.Fatal(err)
	}
	return code
}

// rawCall is call for code without a *testing.T (goroutines, benchmarks).
func rawCall(key, method, path string, body any, out any, headers map[string]string) (int, error) {
	return callAt(stack.api.URL, key, method, path, body, out, headers)
}

// callAt is rawCall to the API at base (the embedded one or a cluster's).
func callAt(base, key, method, path string, body any, out any, headers map[string]string) (int, error) {
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, err
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, base+path, r)
	if err != nil {
		return 0, err
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	if out != nil && len(raw) > 0 {
		if err := json.Unmarshal(raw, out); err != nil {
			return resp.StatusCode, fmt.Errorf("%s %s: %d, body not JSON: %v: %s", method, path, resp.StatusCode, err, raw)
		}
	}
	return resp.StatusCode, nil
}

func demoKey() string { return stack.app.Config.DemoKey }
func acmeKey() string { return stack.app.Config.AcmeKey }

// eventually waits for cond (testenv.Eventually).
var eventually = testenv.Eventually
