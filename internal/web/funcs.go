package web

import (
	"encoding/json"
	"fmt"
	"html/template"
	"strings"
	"time"

	"github.com/orgplane/orgplane/internal/core"
)

var funcs = template.FuncMap{
	"ts":           ts,
	"ago":          ago,
	"dur":          dur,
	"since":        func(t time.Time) string { return dur(time.Since(t)) },
	"reasonCounts": reasonCounts,
	"nameOf":       nameOf,
	"statusClass":  statusClass,
	"pretty":       prettyJSON,
	"prettyRaw":    func(b json.RawMessage) string { return prettyJSON(string(b)) },
	"jobDur": func(start, end time.Time) string {
		if start.IsZero() || end.IsZero() {
			return ""
		}
		return dur(end.Sub(start))
	},
	"isZeroTime": func(t time.Time) bool { return t.IsZero() },
}

func ts(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("2006-01-02 15:04:05Z")
}

func ago(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return dur(time.Since(t)) + " ago"
}

// dur says a duration the way a person reads it: "14 h 3 min", "42 s".
func dur(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	switch {
	case d < time.Second:
		return fmt.Sprintf("%d ms", d.Milliseconds())
	case d < time.Minute:
		return fmt.Sprintf("%.1f s", d.Seconds())
	case d < time.Hour:
		return fmt.Sprintf("%d min %d s", int(d.Minutes()), int(d.Seconds())%60)
	case d < 48*time.Hour:
		return fmt.Sprintf("%d h %d min", int(d.Hours()), int(d.Minutes())%60)
	default:
		return fmt.Sprintf("%d days %d h", int(d.Hours())/24, int(d.Hours())%24)
	}
}

func nameOf(names map[string]string, id string) string {
	if n, ok := names[id]; ok {
		return n
	}
	return id
}

// statusClass is the CSS class of a status: its colour, always beside
// its word.
func statusClass(status string) string {
	switch status {
	case core.StatusRunning, "succeeded", "approved", "answered", "ok":
		return "st-ok"
	case core.StatusProvisioning, core.StatusDegraded, "pending", "executing":
		return "st-warn"
	case core.StatusFailed, "denied", "expired":
		return "st-bad"
	default:
		if strings.HasPrefix(status, "error") {
			return "st-bad"
		}
		return "st-off"
	}
}

// PlanView is an impact table: counts by reason and one row per workspace.
type PlanView struct {
	Counts    []ReasonCount
	Rows      []PlanRow
	Restarts  int
	Truncated bool
	Total     int
}

// PlanRow is one workspace's decision.
type PlanRow struct {
	ID, Name, Action, Reason string
}

func planView(names map[string]string, r *core.ActionResult) *PlanView {
	if r == nil {
		return nil
	}
	v := &PlanView{Counts: reasonCounts(r.Counts), Restarts: r.Restarts, Truncated: r.Truncated}
	for _, c := range v.Counts {
		v.Total += c.N
	}
	for _, d := range r.Decisions {
		v.Rows = append(v.Rows, PlanRow{ID: d.WorkspaceID, Name: nameOf(names, d.WorkspaceID), Action: d.Action, Reason: d.Reason})
	}
	return v
}

func init() {
	funcs["plan"] = planView
	funcs["list"] = func(a ...string) []string { return a }
}
