// Package maintner owns tryd's corpus: an append-only log of mutations
// describing all GitHub and Gerrit activity tryd has seen, the in-memory
// model built by applying them, the stores that keep the log (local disk or
// Google Cloud Storage), the /logs server that lets followers sync it, a
// follower, and the query API with its Go client.
//
// The log is wire-compatible with golang.org/x/build/maintner: records are
// framed as "REC@<hex offset>+<hex length>=" followed by the payload, a
// protobuf whose fields 1-4 are maintpb.Mutation and whose fields numbered
// 100 and up carry data maintpb cannot express. Segments are at most 16 MiB
// and a record never spans two segments.
//
// This package imports nothing else of tryd.
package maintner
