// Package trydpb holds tryd's protobuf extension of x/build's maintpb
// Mutation: the fields numbered 100 and up of a log record, carrying data
// maintpb cannot express (pull request heads and bases, commit statuses,
// check runs, repository metadata). See trydpb.proto for the wire format.
package trydpb

//go:generate protoc -I . -I /usr/include --go_out=. --go_opt=paths=source_relative trydpb.proto
