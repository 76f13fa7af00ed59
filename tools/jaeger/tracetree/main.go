// Command tracetree prints traces from a Jaeger query service as indented
// trees in the terminal, links included: the viewer for `make traces`, whose
// Jaeger binary (built from the Go module proxy) serves only a placeholder
// web UI, but the whole query API.
//
//	go run ./tracetree 0af7651916cd43dd8448eb211c80319c   # one trace, and the traces that link to it
//	go run ./tracetree -service sagaflow-dev -operation 'PUT /v1/products/:sku'
//
// Run it from tools/jaeger. -url names the query service (default
// http://127.0.0.1:16686).
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"
)

type span struct {
	TraceID       string `json:"traceID"`
	SpanID        string `json:"spanID"`
	OperationName string `json:"operationName"`
	References    []struct {
		RefType string `json:"refType"`
		TraceID string `json:"traceID"`
		SpanID  string `json:"spanID"`
	} `json:"references"`
	StartTime int64  `json:"startTime"` // µs
	Duration  int64  `json:"duration"`  // µs
	ProcessID string `json:"processID"`
	Tags      []struct {
		Key   string `json:"key"`
		Value any    `json:"value"`
	} `json:"tags"`
}

type trace struct {
	TraceID   string `json:"traceID"`
	Spans     []span `json:"spans"`
	Processes map[string]struct {
		Service string `json:"serviceName"`
	} `json:"processes"`
}

func main() {
	base := flag.String("url", "http://127.0.0.1:16686", "Jaeger query service")
	service := flag.String("service", "", "list the latest traces of this service instead")
	operation := flag.String("operation", "", "with -service: only traces with this operation")
	limit := flag.Int("limit", 3, "with -service: how many traces")
	lookback := flag.Duration("lookback", time.Hour, "how far back to search")
	flag.Parse()
	var traces []trace
	var err error
	switch {
	case flag.NArg() == 1:
		traces, err = get(*base + "/api/traces/" + url.PathEscape(flag.Arg(0)))
		if err == nil && len(traces) == 1 && *service == "" {
			// The traces of the same services that link to this one (a
			// batch's consumer, a push that carried the change).
			svcs := map[string]bool{}
			for _, p := range traces[0].Processes {
				svcs[p.Service] = true
			}
			for svc := range svcs {
				more, _ := search(*base, svc, "", 200, *lookback)
				for _, t := range more {
					if t.TraceID != traces[0].TraceID && linksTo(t, traces[0].TraceID) {
						traces = append(traces, t)
					}
				}
			}
		}
	case *service != "":
		traces, err = search(*base, *service, *operation, *limit, *lookback)
	default:
		fmt.Fprintln(os.Stderr, "usage: tracetree TRACE_ID | tracetree -service NAME [-operation OP]")
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "tracetree:", err)
		os.Exit(1)
	}
	for i, t := range traces {
		if i > 0 {
			fmt.Println()
		}
		print(t)
	}
}

func search(base, service, operation string, limit int, lookback time.Duration) ([]trace, error) {
	q := url.Values{"service": {service}, "limit": {fmt.Sprint(limit)}, "lookback": {lookback.String()}}
	if operation != "" {
		q.Set("operation", operation)
	}
	return get(base + "/api/traces?" + q.Encode())
}

func get(u string) ([]trace, error) {
	resp, err := http.Get(u) //nolint:gosec // a local tool reading the URL it is given
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	var doc struct{ Data []trace }
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		return nil, fmt.Errorf("GET %s: %w", u, err)
	}
	return doc.Data, nil
}

func linksTo(t trace, traceID string) bool {
	for _, s := range t.Spans {
		for _, r := range s.References {
			if r.RefType == "FOLLOWS_FROM" && r.TraceID == traceID {
				return true
			}
		}
	}
	return false
}

// print writes t as a tree: each span with its service, duration, kind and
// the spans of other traces it links to.
func print(t trace) {
	children := map[string][]span{}
	ids := map[string]bool{}
	for _, s := range t.Spans {
		ids[s.SpanID] = true
	}
	var roots []span
	for _, s := range t.Spans {
		parent := ""
		for _, r := range s.References {
			if r.RefType == "CHILD_OF" && r.TraceID == t.TraceID && ids[r.SpanID] {
				parent = r.SpanID
			}
		}
		if parent == "" {
			roots = append(roots, s)
		} else {
			children[parent] = append(children[parent], s)
		}
	}
	byStart := func(a, b span) int { return int(a.StartTime - b.StartTime) }
	slices.SortFunc(roots, byStart)
	fmt.Printf("trace %s (%d spans)\n", t.TraceID, len(t.Spans))
	var walk func(s span, depth int)
	walk = func(s span, depth int) {
		kind := ""
		for _, tag := range s.Tags {
			if tag.Key == "span.kind" {
				kind = fmt.Sprint(tag.Value)
			}
		}
		var links []string
		for _, r := range s.References {
			if r.RefType == "FOLLOWS_FROM" {
				links = append(links, r.TraceID+"/"+r.SpanID)
			}
		}
		line := fmt.Sprintf("%s%s  [%s %s %s]", strings.Repeat("  ", depth), s.OperationName, t.Processes[s.ProcessID].Service,
			kind, time.Duration(s.Duration)*time.Microsecond)
		if len(links) > 0 {
			line += "  links: " + strings.Join(links, ", ")
		}
		fmt.Println(line)
		cs := children[s.SpanID]
		slices.SortFunc(cs, byStart)
		for _, c := range cs {
			walk(c, depth+1)
		}
	}
	for _, r := range roots {
		walk(r, 1)
	}
}
