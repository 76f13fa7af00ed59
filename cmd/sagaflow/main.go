// Command sagaflow runs commerce sagas on Temporal. `sagaflow dev` runs the
// whole system in one process; `sagaflow api` and `sagaflow worker` run the
// parts on their own against an external Temporal cluster. `sagaflow help`
// documents every configuration variable.
package main

import (
	"context"
	"fmt"
	"net/http"
	_ "net/http/pprof" // served only on SAGAFLOW_PPROF_ADDR
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/sagaflow/sagaflow/internal/config"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := newRoot().ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "sagaflow:", err)
		os.Exit(1)
	}
}

// cli carries what the root command resolves for its subcommands.
type cli struct {
	flags map[string]*string // environment key → flag value
	cfg   config.Config
}

func newRoot() *cobra.Command {
	c := &cli{flags: map[string]*string{}}
	root := &cobra.Command{
		Use:           "sagaflow",
		Short:         "Durable commerce sagas on Temporal",
		Long:          "sagaflow runs the long, failure-prone processes of online commerce as durable sagas on Temporal.\n\n" + envHelp(),
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			overrides := map[string]string{}
			for key, v := range c.flags {
				if cmd.Flags().Changed(config.FlagName(key)) {
					overrides[key] = *v
				}
			}
			cfg, err := config.Load(os.Environ(), overrides)
			if err != nil {
				return err
			}
			c.cfg = cfg
			if cfg.PprofAddr != "" {
				go func() {
					// Profiling is opt-in and bound where the operator says.
					err := http.ListenAndServe(cfg.PprofAddr, nil) //nolint:gosec // no timeouts needed for pprof
					fmt.Fprintln(os.Stderr, "sagaflow: pprof:", err)
				}()
			}
			return nil
		},
	}
	for _, v := range config.Vars() {
		c.flags[v.Env] = root.PersistentFlags().String(v.Flag, "", fmt.Sprintf("%s (env %s, default %q)", v.Help, v.Env, v.Default))
	}
	root.AddCommand(c.devCmd(), c.apiCmd(), c.workerCmd(), c.simCmd(), c.uiCmd(), c.migrateCmd(), c.tenantCmd(), c.channelsCmd())
	return root
}

// envHelp is the table of configuration variables in `sagaflow help`.
func envHelp() string {
	var b strings.Builder
	b.WriteString("Configuration: environment variables, each overridden by the flag named after it.\n\n")
	w := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "VARIABLE\tFLAG\tDEFAULT\tMEANING")
	for _, v := range config.Vars() {
		def := v.Default
		if def == "" {
			def = "(empty)"
		}
		fmt.Fprintf(w, "%s\t--%s\t%s\t%s\n", v.Env, v.Flag, def, v.Help)
	}
	_ = w.Flush()
	b.WriteString("\nTracing: the standard OpenTelemetry variables (not flags): OTEL_EXPORTER_OTLP_ENDPOINT or\n" +
		"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT turns export on (unset: nothing is recorded or exported),\n" +
		"OTEL_EXPORTER_OTLP_PROTOCOL grpc|http/protobuf (default http/protobuf), OTEL_SERVICE_NAME,\n" +
		"OTEL_TRACES_SAMPLER, OTEL_TRACES_SAMPLER_ARG; see docs/tracing.md.\n")
	return b.String()
}
