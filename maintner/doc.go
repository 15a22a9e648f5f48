// Package maintner owns tryd's corpus: an append-only log of mutations
// describing all GitHub and Gerrit activity tryd has seen, the in-memory
// model built by applying them, the stores that keep the log (local disk or
// Google Cloud Storage), the /logs server that lets followers sync it, a
// follower, and the query API with its Go client.
//
// Long text (bodies, messages) is not copied onto the heap: a corpus
// keeps references into the log it was built from and reads text back
// on demand (see Text). That holds for a leader (Log), for a corpus
// loaded from segment files or a log (LoadFiles, LoadDir, LoadLog) and
// for a follower of a maintnerd (Follow), whose references point into
// the logsync follower's cache; only records applied without a position
// (Apply, Load) keep their text in memory.
//
// The log is wire-compatible with golang.org/x/build/maintner: records are
// framed as "REC@<hex offset>+<hex length>=" followed by the payload, a
// protobuf whose fields 1-4 are maintpb.Mutation and whose fields numbered
// 100 and up carry data maintpb cannot express. Segments are at most 16 MiB
// and a record never spans two segments.
//
// This package imports nothing else of tryd.
package maintner
