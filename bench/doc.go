// Package bench holds Wrenn's benchmarks. Each one measures a Wrenn path and, in the
// same run, a baseline that does the same work without Wrenn, and reports the ratio, so
// figures from different machines stay comparable. Run them with `make bench`.
package bench
