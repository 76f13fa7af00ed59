package workflows

import (
	"path/filepath"
	"testing"

	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
)

// TestReplay_recorded_histories replays every history recorded from a real
// server (testdata/*.json, written by the integration tests with
// SAGAFLOW_RECORD_HISTORY=1) against today's workflow code: a change that
// would break running workflows fails here. Files that `make
// record-histories` does not write are frozen on purpose: they keep a
// history of an older version of a workflow (sync_parked_before_backfill.json:
// CatalogSync before channels were backfilled; join_confirmed.json and
// join_cancelled.json: the join saga before version 1;
// join_confirmed_until_done.json: version 1 as GetVersion recorded it,
// before the API put the version into the saga's input).
func TestReplay_recorded_histories(t *testing.T) {
	files, err := filepath.Glob("testdata/*.json")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no recorded histories in testdata/")
	}
	r := worker.NewWorkflowReplayer()
	r.RegisterWorkflowWithOptions(Probe, workflow.RegisterOptions{Name: ProbeWorkflowType})
	r.RegisterWorkflowWithOptions(Join, workflow.RegisterOptions{Name: JoinWorkflowType})
	r.RegisterWorkflowWithOptions(Campaign, workflow.RegisterOptions{Name: CampaignWorkflowType})
	r.RegisterWorkflowWithOptions(CatalogSync, workflow.RegisterOptions{Name: CatalogSyncWorkflowType})
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			if err := r.ReplayWorkflowHistoryFromJSONFile(nil, f); err != nil {
				t.Fatalf("replay %s: %v", f, err)
			}
		})
	}
}
