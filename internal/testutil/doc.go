// Package testutil holds the small helpers many packages' tests share: skipping without
// root (and saying why), polling for a condition, checking Connect error codes, and
// making the host resources tests need (a loop-mounted reflink XFS, a network
// namespace). Only tests, benchmarks and other test helpers import it; the dependency
// guard in internal/archtest fails when production code does.
package testutil
