// Package deps holds no code: its test enforces the dependency rules of
// DESIGN.md ("Layout and dependency rules"), so that a new arrow between
// tryd's top-level packages fails the build instead of eroding the design.
package deps
