//go:build nodev

package app

import (
	"context"
	"errors"
	"log/slog"

	"github.com/sagaflow/sagaflow/internal/config"
)

func startEmbedded(context.Context, config.Config, *slog.Logger, bool) (Embedded, error) {
	return nil, errors.New("this sagaflow is built without the embedded Temporal server (-tags nodev): set TEMPORAL_ADDRESS")
}
