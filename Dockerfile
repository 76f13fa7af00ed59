# syntax=docker/dockerfile:1
#
# sagaflow — one binary, one image. The subcommand is the container command:
#   docker run sagaflow:local api|worker|migrate
# (`dev`, with its embedded Temporal server, is for local use, not for images.)

FROM golang:1.26-bookworm AS build
WORKDIR /src
ENV CGO_ENABLED=0 \
    GOFLAGS=-buildvcs=false

# Dependencies first: this layer is rebuilt only when go.mod or go.sum change.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod \
    go mod download

COPY . .
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -tags nodev -trimpath -ldflags='-s -w' -o /out/sagaflow ./cmd/sagaflow

FROM debian:12-slim
# ca-certificates for TLS to managed services, tzdata for time zones,
# curl for the compose healthcheck on GET /healthz.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl tzdata \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 sagaflow \
    && useradd --system --uid 10001 --gid sagaflow --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin sagaflow

COPY --from=build /out/sagaflow /usr/local/bin/sagaflow

USER 10001:10001
ENV SAGAFLOW_HTTP_ADDR=:8080 \
    SAGAFLOW_LOG_FORMAT=json
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/sagaflow"]
CMD ["api"]
