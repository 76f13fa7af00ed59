//go:build !nodev

package app

import (
	"context"
	"log/slog"
	"path/filepath"

	"github.com/sagaflow/sagaflow/internal/config"
	"github.com/sagaflow/sagaflow/internal/devserver"
	"github.com/sagaflow/sagaflow/workflows"
)

// startEmbedded starts the dev server: a SQLite file under the data
// directory (kept across restarts), or memory for tests.
func startEmbedded(ctx context.Context, cfg config.Config, log *slog.Logger, inMemory bool) (Embedded, error) {
	dbFile := ""
	if !inMemory {
		dbFile = filepath.Join(cfg.DataDir, "temporal", "temporal.db")
	}
	level, _ := cfg.SlogLevel()
	srv, err := devserver.Start(ctx, devserver.Options{
		BindIP:           cfg.DevBindIP,
		Port:             cfg.DevTemporalPort,
		UIPort:           cfg.DevUIPort,
		DBFile:           dbFile,
		Namespace:        cfg.TemporalNamespace,
		SearchAttributes: workflows.SearchAttributes(),
		Logger:           log,
		LogLevel:         serverLogLevel(level),
	})
	if err != nil {
		return nil, err // not a typed nil in the interface
	}
	return srv, nil
}

// serverLogLevel is the embedded server's level for a process level: the
// server warns a lot while it starts and stops, so below debug only its
// errors reach our log.
func serverLogLevel(l slog.Level) slog.Level {
	if l <= slog.LevelDebug {
		return slog.LevelDebug
	}
	return slog.LevelError
}
