package workers

import (
	"encoding/base64"
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/workflow"

	"github.com/sagaflow/sagaflow/activities"
	"github.com/sagaflow/sagaflow/workflows"
)

// sagas are the task queues, each with the workflow type it runs and the
// workflows/ file that holds it (and declares its activities' nil pointer).
var sagas = map[string]struct{ workflowType, file string }{
	workflows.TaskQueueOps:    {workflows.ProbeWorkflowType, "probe.go"},
	workflows.TaskQueueJoin:   {workflows.JoinWorkflowType, "join.go"},
	workflows.TaskQueueCoupon: {workflows.CampaignWorkflowType, "campaign.go"},
	workflows.TaskQueueSync:   {workflows.CatalogSyncWorkflowType, "sync.go"},
}

// recorder is a Registry that keeps the names Temporal would know the
// registrations by: a workflow by its options' name, an activity struct's
// exported methods by their names (what the SDK does for a struct).
type recorder struct {
	t          *testing.T
	workflows  map[string]bool
	activities map[string]bool
}

func (r *recorder) RegisterWorkflowWithOptions(_ any, o workflow.RegisterOptions) {
	if o.Name == "" {
		r.t.Errorf("a workflow registered without a name")
	}
	r.workflows[o.Name] = true
}

func (r *recorder) RegisterActivity(a any) {
	typ := reflect.TypeOf(a)
	if typ.Kind() != reflect.Pointer || typ.Elem().Kind() != reflect.Struct {
		r.t.Errorf("activity %T registered: want a pointer to a struct of activities", a)
		return
	}
	for m := range typ.Methods() {
		if m.IsExported() {
			if r.activities[m.Name] {
				r.t.Errorf("activity %s registered twice", m.Name)
			}
			r.activities[m.Name] = true
		}
	}
}

// names are the workflow and activity types one task queue needs.
type names struct{ workflows, activities map[string]bool }

func newNames() names { return names{workflows: map[string]bool{}, activities: map[string]bool{}} }

// historyNames reads, per task queue, the workflow types and the activity
// types (remote, and local from their markers) of the recorded histories.
func historyNames(t *testing.T) map[string]names {
	t.Helper()
	files, err := filepath.Glob("../workflows/testdata/*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no recorded histories (%v)", err)
	}
	type payloads struct {
		Payloads []struct {
			Data string `json:"data"`
		} `json:"payloads"`
	}
	var history struct {
		Events []struct {
			Started *struct {
				WorkflowType struct{ Name string } `json:"workflowType"`
				TaskQueue    struct{ Name string } `json:"taskQueue"`
			} `json:"workflowExecutionStartedEventAttributes"`
			Scheduled *struct {
				ActivityType struct{ Name string } `json:"activityType"`
				TaskQueue    struct{ Name string } `json:"taskQueue"`
			} `json:"activityTaskScheduledEventAttributes"`
			Marker *struct {
				MarkerName string              `json:"markerName"`
				Details    map[string]payloads `json:"details"`
			} `json:"markerRecordedEventAttributes"`
		} `json:"events"`
	}
	out := map[string]names{}
	at := func(queue string) names {
		n, ok := out[queue]
		if !ok {
			n = newNames()
			out[queue] = n
		}
		return n
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		history.Events = nil
		if err := json.Unmarshal(b, &history); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		queue := ""
		for _, e := range history.Events {
			switch {
			case e.Started != nil:
				queue = e.Started.TaskQueue.Name
				at(queue).workflows[e.Started.WorkflowType.Name] = true
			case e.Scheduled != nil:
				at(e.Scheduled.TaskQueue.Name).activities[e.Scheduled.ActivityType.Name] = true
			case e.Marker != nil && e.Marker.MarkerName == "LocalActivity":
				for _, p := range e.Marker.Details["data"].Payloads {
					raw, err := base64.StdEncoding.DecodeString(p.Data)
					if err != nil {
						t.Fatalf("%s: local activity marker: %v", f, err)
					}
					var la struct{ ActivityType string }
					if err := json.Unmarshal(raw, &la); err != nil || la.ActivityType == "" {
						t.Fatalf("%s: local activity marker without a type (%v): %s", f, err, raw)
					}
					// A local activity runs in the worker of its workflow.
					at(queue).activities[la.ActivityType] = true
				}
			}
		}
		if queue == "" {
			t.Fatalf("%s: no workflow start", f)
		}
	}
	return out
}

// codeNames reads workflows/*.go: each package-level nil pointer to an
// activities type belongs to the queue of the file that declares it, and
// every method selected on it anywhere in the package (ExecuteActivity,
// ExecuteLocalActivity or a variable) is an activity that queue needs.
func codeNames(t *testing.T) map[string]names {
	t.Helper()
	fset := token.NewFileSet()
	files, err := filepath.Glob("../workflows/*.go")
	if err != nil {
		t.Fatal(err)
	}
	queueOfFile := map[string]string{}
	for queue, s := range sagas {
		queueOfFile[s.file] = queue
	}
	var parsed []*ast.File
	queueOfVar := map[string]string{}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		af, err := parser.ParseFile(fset, f, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		parsed = append(parsed, af)
		for _, d := range af.Decls {
			gd, ok := d.(*ast.GenDecl)
			if !ok || gd.Tok != token.VAR {
				continue
			}
			for _, spec := range gd.Specs {
				vs := spec.(*ast.ValueSpec)
				star, ok := vs.Type.(*ast.StarExpr)
				if !ok {
					continue
				}
				sel, ok := star.X.(*ast.SelectorExpr)
				if !ok || !isIdent(sel.X, "activities") || !strings.HasSuffix(sel.Sel.Name, "Activities") {
					continue
				}
				queue, ok := queueOfFile[filepath.Base(f)]
				if !ok {
					t.Fatalf("%s declares %s, but no saga's workflow lives there", f, vs.Names[0].Name)
				}
				for _, n := range vs.Names {
					queueOfVar[n.Name] = queue
				}
			}
		}
	}
	if len(queueOfVar) != len(sagas) {
		t.Fatalf("activity pointers %v: want one per saga", queueOfVar)
	}
	out := map[string]names{}
	for queue, s := range sagas {
		out[queue] = newNames()
		out[queue].workflows[s.workflowType] = true
	}
	for _, af := range parsed {
		ast.Inspect(af, func(n ast.Node) bool {
			if sel, ok := n.(*ast.SelectorExpr); ok {
				if id, ok := sel.X.(*ast.Ident); ok {
					if queue, ok := queueOfVar[id.Name]; ok {
						out[queue].activities[sel.Sel.Name] = true
					}
				}
			}
			return true
		})
	}
	return out
}

func isIdent(e ast.Expr, name string) bool {
	id, ok := e.(*ast.Ident)
	return ok && id.Name == name
}

// Each task queue registers exactly what its workflows need: the workflow
// types its recorded histories start and its code names, and the activities
// (local ones too) those histories scheduled and the workflow code calls;
// nothing of another saga. A registration missing here is a workflow task
// or an activity that no worker would pick up in production.
func TestRegister_registers_per_task_queue_exactly_what_runs_there(t *testing.T) {
	want := codeNames(t)
	for queue, n := range historyNames(t) {
		if _, ok := want[queue]; !ok {
			t.Fatalf("a recorded history runs on task queue %q, which no saga has", queue)
		}
		maps.Copy(want[queue].workflows, n.workflows)
		maps.Copy(want[queue].activities, n.activities)
	}
	if got := slices.Sorted(slices.Values(TaskQueues)); !slices.Equal(got, slices.Sorted(maps.Keys(want))) {
		t.Fatalf("TaskQueues = %v, want %v", got, slices.Sorted(maps.Keys(want)))
	}
	for _, queue := range TaskQueues {
		r := &recorder{t: t, workflows: map[string]bool{}, activities: map[string]bool{}}
		Register(r, queue, &activities.Activities{})
		if got, w := slices.Sorted(maps.Keys(r.workflows)), slices.Sorted(maps.Keys(want[queue].workflows)); !slices.Equal(got, w) {
			t.Errorf("%s registers the workflows %v, want %v", queue, got, w)
		}
		if got, w := slices.Sorted(maps.Keys(r.activities)), slices.Sorted(maps.Keys(want[queue].activities)); !slices.Equal(got, w) {
			t.Errorf("%s registers the activities %v, want %v", queue, got, w)
		}
	}
}

// The names the recorded histories hold, written out, so that a history
// that loses one (or a reader) sees the list: the test above derives them.
func TestRegister_covers_the_recorded_activity_types(t *testing.T) {
	want := map[string][]string{
		workflows.TaskQueueOps:    {"CheckDependency"},
		workflows.TaskQueueJoin:   {"Charge", "ConfirmSeat", "Notify", "Refund", "ReleaseSeat", "ReserveSeat", "SaveJoin", "VoidCharge"},
		workflows.TaskQueueCoupon: {"IssueNext", "OpenCampaign", "Reconcile"},
		workflows.TaskQueueSync: {"BackfillPage", "LoadChannels", "LoadSyncChannels", "ParkAndCount", "ParkItems", "PushProducts",
			"UnparkAndCount", "UnparkItems"},
	}
	got := historyNames(t)
	for queue, w := range want {
		if g := slices.Sorted(maps.Keys(got[queue].activities)); !slices.Equal(g, w) {
			t.Errorf("histories on %s schedule %v, want %v", queue, g, w)
		}
	}
}

// New builds a worker per saga through the real SDK, which panics on an
// activity method it cannot register or a name registered twice.
func TestNew_builds_one_worker_per_task_queue(t *testing.T) {
	c, err := client.NewLazyClient(client.Options{HostPort: "127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ws := New(c, &activities.Activities{Probe: &activities.ProbeActivities{}}, Options{})
	if got, want := slices.Sorted(maps.Keys(ws)), slices.Sorted(slices.Values(TaskQueues)); !slices.Equal(got, want) {
		t.Fatalf("workers on %v, want %v", got, want)
	}
}

// Register refuses a task queue no saga runs on.
func TestRegister_panics_on_an_unknown_task_queue(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("Register on an unknown queue did not panic")
		}
	}()
	Register(&recorder{t: t, workflows: map[string]bool{}, activities: map[string]bool{}}, "sagaflow-nope", nil)
}
