package dashboard

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/tryd-ci/tryd/coordinator/api"
)

// jobEvent is the data of a build page's live update: a job's new state
// (or, with Type "build_finished", the build's).
type jobEvent struct {
	Type       string `json:"type"`
	JobID      string `json:"job_id,omitempty"`
	JobName    string `json:"job_name,omitempty"`
	State      string `json:"state,omitempty"`
	Worker     string `json:"worker,omitempty"`
	AttemptID  string `json:"attempt_id,omitempty"`
	BuildState string `json:"build_state,omitempty"`
}

// jobStateOf maps a coordinator event to the job state it leaves.
func jobStateOf(ev api.Event) string {
	switch ev.Type {
	case api.EventJobQueued, api.EventJobRequeued:
		return string(api.JobQueued)
	case api.EventJobStarted:
		return string(api.JobRunning)
	case api.EventJobCached:
		return string(api.JobCached)
	case api.EventJobSkipped:
		return string(api.JobSkipped)
	case api.EventJobFinished:
		return string(ev.State)
	}
	return ""
}

// serveBuildEvents relays a build's job events as server-sent events
// (log chunks are left out: the log page follows those), ending with an
// "end" event when the build has finished. The build page's script
// updates job states from them.
func (s *Server) serveBuildEvents(w http.ResponseWriter, r *http.Request) error {
	id, err := buildID(r)
	if err != nil {
		return err
	}
	// Check the build exists before answering with a stream.
	if _, err := s.opts.Coordinator.Build(r.Context(), id); err != nil {
		return err
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	rctl := http.NewResponseController(w)
	rctl.Flush()
	events := make(chan api.Event, 64)
	errc := make(chan error, 1)
	go func() {
		_, err := s.opts.Coordinator.Wait(r.Context(), id, func(ev api.Event) {
			if ev.Type == api.EventLog || ev.Type == api.EventHello {
				return
			}
			select {
			case events <- ev:
			case <-r.Context().Done():
			}
		})
		errc <- err
	}()
	tick := time.NewTicker(s.opts.KeepAlive)
	defer tick.Stop()
	for {
		select {
		case <-r.Context().Done():
			return nil
		case <-tick.C:
			fmt.Fprint(w, ": keepalive\n\n")
			rctl.Flush()
		case ev := <-events:
			if _, err := fmt.Fprintf(w, "data: %s\n\n", eventJSON(ev)); err != nil {
				return nil
			}
			rctl.Flush()
		case err := <-errc:
			// Deliver what is still queued, then end.
			for len(events) > 0 {
				fmt.Fprintf(w, "data: %s\n\n", eventJSON(<-events))
			}
			if err == nil {
				fmt.Fprint(w, "event: end\ndata: {}\n\n")
			}
			rctl.Flush()
			return nil
		}
	}
}

func eventJSON(ev api.Event) []byte {
	data, _ := json.Marshal(jobEvent{Type: string(ev.Type), JobID: ev.JobID, JobName: ev.JobName, State: jobStateOf(ev),
		Worker: ev.Worker, AttemptID: ev.AttemptID, BuildState: string(ev.BuildState)})
	return data
}
