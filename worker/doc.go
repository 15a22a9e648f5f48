// Package worker is the executing side of tryd: it dials a coordinator,
// authenticates with its token, announces its labels and free slots, runs
// the jobs it is given in their own process groups with their sources and
// dependency outputs in place, streams their logs and uploads their outputs.
//
// It imports only the coordinator's API and graph types.
package worker
