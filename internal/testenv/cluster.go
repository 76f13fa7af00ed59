package testenv

import (
	"os"
	"path/filepath"
	"runtime"
)

// ClusterSimPorts are the simulators' ports on `make cluster`
// (deploy/cluster.sh's header), by name.
var ClusterSimPorts = map[string]int{"payment": 8091, "notify": 8092, "shopwave": 8093, "souk": 8094, "bazaar": 8095}

// EnvOr is the environment variable name, or def when it is unset or empty.
func EnvOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// RepoRoot is the checkout this package belongs to.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}
