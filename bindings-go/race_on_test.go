//go:build race

package arbiter

// The race detector slows every call tenfold: the million-decision memory check runs in the
// plain test run instead.
const raceEnabled = true
