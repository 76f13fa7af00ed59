// Package devserver embeds a single-process Temporal server, with its Web UI,
// in the sagaflow binary, so that `sagaflow dev` and the integration tests
// need nothing but this binary. It stores its state in a SQLite file (or in
// memory) and is meant for one laptop or one test run, never production:
// production processes dial an external cluster through TEMPORAL_ADDRESS.
package devserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"time"

	uiserver "github.com/temporalio/ui-server/v2/server"
	uiconfig "github.com/temporalio/ui-server/v2/server/config"
	uiserveroptions "github.com/temporalio/ui-server/v2/server/server_options"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/server/common/authorization"
	"go.temporal.io/server/common/cluster"
	"go.temporal.io/server/common/config"
	"go.temporal.io/server/common/dynamicconfig"
	tlog "go.temporal.io/server/common/log"
	"go.temporal.io/server/common/membership/static"
	sqliteplugin "go.temporal.io/server/common/persistence/sql/sqlplugin/sqlite"
	"go.temporal.io/server/common/primitives"
	sqliteschema "go.temporal.io/server/schema/sqlite"
	"go.temporal.io/server/temporal"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// clusterID must stay the same across restarts of a file-backed server: the
// cluster metadata stored in the file carries it, and a new one makes the
// server refuse to start.
const clusterID = "5a6a1f6e-3c4b-4d8e-9a51-2d1f0c9e7b10"

const clusterName = "active"

// Options configure an embedded server. The zero value is not usable: Port,
// Namespace and Logger are required.
type Options struct {
	// BindIP is the IP every listener binds to; empty means 127.0.0.1.
	BindIP string
	// Port is the frontend gRPC port clients dial.
	Port int
	// UIPort serves the Temporal Web UI; 0 means no UI.
	UIPort int
	// DBFile is the SQLite file; empty keeps everything in memory (tests).
	DBFile string
	// Namespace is created at start if it does not exist.
	Namespace string
	// SearchAttributes are registered on Namespace when it is created.
	// Attributes added later are registered by the caller through the
	// operator API (see temporalclient.EnsureSearchAttributes).
	SearchAttributes map[string]enumspb.IndexedValueType
	// Logger receives the server's warnings and errors.
	Logger *slog.Logger
	// LogLevel of the server's own log; the server is chatty at info.
	LogLevel slog.Level
}

// Server is a running embedded Temporal server. Stop it once.
type Server struct {
	server  temporal.Server
	ui      *UI
	address string
}

// Start builds and starts the server and returns when the frontend accepts
// connections. It fails at once, with a clear error, if a port is taken.
func Start(ctx context.Context, o Options) (*Server, error) {
	if o.BindIP == "" {
		o.BindIP = "127.0.0.1"
	}
	if o.Port == 0 || o.Namespace == "" || o.Logger == nil {
		return nil, errors.New("devserver: Port, Namespace and Logger are required")
	}
	ports := []int{o.Port}
	if o.UIPort != 0 {
		ports = append(ports, o.UIPort)
	}
	// The configured ports stay held while the kernel picks the internal
	// ones, so that it cannot hand one of them out again: a port just
	// closed is free to the next ask for ":0".
	held := make([]net.Listener, 0, len(ports))
	release := func() {
		for _, l := range held {
			_ = l.Close()
		}
	}
	for _, p := range ports {
		l, err := holdPort(o.BindIP, p)
		if err != nil {
			release()
			return nil, err
		}
		held = append(held, l)
	}
	internal, err := freePorts(o.BindIP, 4) // frontend HTTP, history, matching, worker
	release()
	if err != nil {
		return nil, err
	}
	sqlConf, err := o.sqlConfig()
	if err != nil {
		return nil, err
	}
	conf := o.serverConfig(sqlConf, internal)
	logger, err := zapLogger(o.LogLevel)
	if err != nil {
		return nil, err
	}
	authorizer, err := authorization.GetAuthorizerFromConfig(&conf.Global.Authorization)
	if err != nil {
		return nil, fmt.Errorf("devserver: authorizer: %w", err)
	}
	claimMapper, err := authorization.GetClaimMapperFromConfig(&conf.Global.Authorization, logger)
	if err != nil {
		return nil, fmt.Errorf("devserver: claim mapper: %w", err)
	}
	hosts := map[primitives.ServiceName]static.Hosts{}
	for name, svc := range conf.Services {
		hosts[primitives.ServiceName(name)] = static.SingleLocalHost(net.JoinHostPort(o.BindIP, strconv.Itoa(svc.RPC.GRPCPort)))
	}
	srv, err := temporal.NewServer(
		temporal.WithConfig(conf),
		temporal.ForServices(temporal.DefaultServices),
		temporal.WithStaticHosts(hosts),
		temporal.WithLogger(logger),
		temporal.WithAuthorizer(authorizer),
		temporal.WithClaimMapper(func(*config.Config) authorization.ClaimMapper { return claimMapper }),
		temporal.WithDynamicConfigClient(dynamicConfig()),
	)
	if err != nil {
		return nil, fmt.Errorf("devserver: new server: %w", err)
	}
	s := &Server{server: srv, address: net.JoinHostPort(o.BindIP, strconv.Itoa(o.Port))}
	if err := srv.Start(); err != nil {
		return nil, fmt.Errorf("devserver: start: %w", err)
	}
	if o.UIPort != 0 {
		s.ui = StartUI(UIOptions{BindIP: o.BindIP, Port: o.UIPort, Frontend: s.address, Namespace: o.Namespace, Logger: o.Logger})
	}
	if err := waitListening(ctx, s.address); err != nil {
		s.Stop()
		return nil, err
	}
	return s, nil
}

// Address is the frontend's host:port.
func (s *Server) Address() string { return s.address }

// UIURL is the Web UI's URL, or "" when it runs without one.
func (s *Server) UIURL() string {
	if s.ui == nil {
		return ""
	}
	return s.ui.URL()
}

// UIError is the error the Web UI stopped with, if it did.
func (s *Server) UIError() error {
	if s.ui == nil {
		return nil
	}
	return s.ui.Err()
}

// Stop stops the UI and the server; the SQLite file keeps every workflow.
func (s *Server) Stop() {
	if s.ui != nil {
		s.ui.Stop()
	}
	_ = s.server.Stop()
}

// UIOptions configure a Web UI. Port, Frontend and Logger are required.
type UIOptions struct {
	// BindIP is the IP the UI listens on; empty means 127.0.0.1.
	BindIP string
	// Port the UI listens on.
	Port int
	// Frontend is the host:port of the Temporal frontend the UI reads.
	Frontend string
	// Namespace the UI opens on.
	Namespace string
	// Logger receives the error the UI stops with.
	Logger *slog.Logger
}

// UI is a running Temporal Web UI, served from assets embedded in the
// binary (it works offline). Stop it once.
type UI struct {
	srv *uiserver.Server
	url string
	err atomic.Value
}

// StartUI serves the Web UI for o.Frontend on o.Port. The caller checks the
// port is free first: a port taken is reported by Err, not at once.
func StartUI(o UIOptions) *UI {
	if o.BindIP == "" {
		o.BindIP = "127.0.0.1"
	}
	u := &UI{
		srv: uiserver.NewServer(uiserveroptions.WithConfigProvider(&uiconfig.Config{
			Host:                o.BindIP,
			Port:                o.Port,
			TemporalGRPCAddress: o.Frontend,
			EnableUI:            true,
			DefaultNamespace:    o.Namespace,
			CORS:                uiconfig.CORS{CookieInsecure: true},
			HideLogs:            true,
			DisableNewsFetch:    true, // our machines are offline; the UI works without it
		})),
		url: "http://" + net.JoinHostPort(o.BindIP, strconv.Itoa(o.Port)),
	}
	// Start blocks until Stop; its error (a port taken after our check) is
	// kept for Err instead of the panic the UI server would otherwise need.
	go func() {
		if err := u.srv.Start(); err != nil && !errors.Is(err, context.Canceled) {
			u.err.Store(err)
			o.Logger.Error("temporal web ui stopped", "error", err)
		}
	}()
	return u
}

// URL is where the UI answers.
func (u *UI) URL() string { return u.url }

// Err is the error the UI stopped with, if it did.
func (u *UI) Err() error {
	if err, ok := u.err.Load().(error); ok {
		return err
	}
	return nil
}

// Stop stops the UI.
func (u *UI) Stop() { u.srv.Stop() }

// PortFree reports, as an error naming the port, whether ip:port is taken.
func PortFree(ip string, port int) error {
	l, err := holdPort(ip, port)
	if err != nil {
		return err
	}
	return l.Close()
}

func (o Options) sqlConfig() (*config.SQL, error) {
	conf := &config.SQL{PluginName: sqliteplugin.PluginName}
	if o.DBFile == "" {
		// A unique name keeps two in-memory servers in one process apart.
		conf.ConnectAttributes = map[string]string{"mode": "memory", "cache": "shared"}
		conf.DatabaseName = fmt.Sprintf("sagaflow-%d-%d", os.Getpid(), time.Now().UnixNano())
	} else {
		// WAL with synchronous=normal: about 1.5× the workflow rate of the
		// default rollback journal on our machines, and still safe against a
		// crash of this process (the OS keeps what was written).
		conf.ConnectAttributes = map[string]string{
			"mode":         "rwc",
			"journal_mode": "wal",
			"synchronous":  "normal",
			"busy_timeout": "10000",
		}
		conf.DatabaseName = o.DBFile
		if _, err := os.Stat(o.DBFile); errors.Is(err, os.ErrNotExist) {
			if err := os.MkdirAll(filepath.Dir(o.DBFile), 0o755); err != nil {
				return nil, fmt.Errorf("devserver: %w", err)
			}
			if err := sqliteschema.SetupSchema(conf); err != nil {
				return nil, fmt.Errorf("devserver: set up sqlite schema: %w", err)
			}
		}
	}
	ns, err := sqliteschema.NewNamespaceConfig(clusterName, o.Namespace, false, o.SearchAttributes)
	if err != nil {
		return nil, fmt.Errorf("devserver: namespace config: %w", err)
	}
	if err := sqliteschema.CreateNamespaces(conf, ns); err != nil {
		return nil, fmt.Errorf("devserver: create namespace %s: %w", o.Namespace, err)
	}
	return conf, nil
}

func (o Options) serverConfig(sqlConf *config.SQL, internal []int) *config.Config {
	frontendAddr := net.JoinHostPort(o.BindIP, strconv.Itoa(o.Port))
	var conf config.Config
	conf.Global.Membership.MaxJoinDuration = 30 * time.Second
	conf.Global.Membership.BroadcastAddress = o.BindIP
	conf.Persistence.DefaultStore = "sqlite"
	conf.Persistence.VisibilityStore = "sqlite"
	conf.Persistence.NumHistoryShards = 1
	conf.Persistence.DataStores = map[string]config.DataStore{"sqlite": {SQL: sqlConf}}
	conf.ClusterMetadata = &cluster.Config{
		FailoverVersionIncrement: 10,
		MasterClusterName:        clusterName,
		CurrentClusterName:       clusterName,
		ClusterInformation: map[string]cluster.ClusterInformation{
			clusterName: {
				Enabled:                true,
				InitialFailoverVersion: 1,
				RPCAddress:             frontendAddr,
				HTTPAddress:            net.JoinHostPort(o.BindIP, strconv.Itoa(internal[0])),
				ClusterID:              clusterID,
			},
		},
	}
	conf.DCRedirectionPolicy.Policy = "noop"
	service := func(port int) config.Service {
		var s config.Service
		s.RPC.GRPCPort = port
		s.RPC.BindOnIP = o.BindIP
		return s
	}
	frontend := service(o.Port)
	frontend.RPC.HTTPPort = internal[0]
	conf.Services = map[string]config.Service{
		string(primitives.FrontendService): frontend,
		string(primitives.HistoryService):  service(internal[1]),
		string(primitives.MatchingService): service(internal[2]),
		string(primitives.WorkerService):   service(internal[3]),
	}
	conf.Archival.History.State = "disabled"
	conf.Archival.Visibility.State = "disabled"
	conf.NamespaceDefaults.Archival.History.State = "disabled"
	conf.NamespaceDefaults.Archival.Visibility.State = "disabled"
	conf.PublicClient.HostPort = frontendAddr
	return &conf
}

func dynamicConfig() dynamicconfig.StaticClient {
	return dynamicconfig.StaticClient{
		// One host holds every workflow: a larger cache saves reloading
		// mutable state from SQLite.
		dynamicconfig.HistoryCacheHostLevelMaxSize.Key(): 8192,
		// The Web UI and the API list workflows often.
		dynamicconfig.FrontendMaxNamespaceVisibilityRPSPerInstance.Key(): 100,
	}
}

// zapLogger is the server's logger: JSON on stderr at level, with the
// server's chatty info lines off by default.
func zapLogger(level slog.Level) (tlog.Logger, error) {
	zl := zapcore.InfoLevel
	switch {
	case level >= slog.LevelError:
		zl = zapcore.ErrorLevel
	case level >= slog.LevelWarn:
		zl = zapcore.WarnLevel
	case level < slog.LevelInfo:
		zl = zapcore.DebugLevel
	}
	cfg := zap.NewProductionConfig()
	cfg.Level = zap.NewAtomicLevelAt(zl)
	cfg.Sampling = nil
	cfg.EncoderConfig.TimeKey = "time"
	cfg.EncoderConfig.EncodeTime = zapcore.RFC3339NanoTimeEncoder
	cfg.InitialFields = map[string]any{"component": "temporal-server"}
	z, err := cfg.Build()
	if err != nil {
		return nil, fmt.Errorf("devserver: logger: %w", err)
	}
	return tlog.NewZapLogger(z), nil
}

// holdPort listens on port, or says it is taken; the caller closes it.
func holdPort(ip string, port int) (net.Listener, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(port)))
	if err != nil {
		return nil, fmt.Errorf("devserver: port %d on %s is taken (another sagaflow dev or Temporal server running?): %w", port, ip, err)
	}
	return l, nil
}

// freePorts asks the kernel for n distinct free ports. Another process may
// take one before the server binds it; Start then fails and can be retried.
func freePorts(ip string, n int) ([]int, error) {
	ports := make([]int, 0, n)
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			_ = l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
		if err != nil {
			return nil, fmt.Errorf("devserver: free port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func waitListening(ctx context.Context, addr string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var d net.Dialer
	for {
		c, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			return c.Close()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("devserver: frontend %s not listening: %w", addr, err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}
