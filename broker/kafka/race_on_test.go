//go:build race

package kafka

// raceSlowdown is how much slower the race detector makes this package's
// Go code (it documents 2-20x; measured here: a fresh client's
// ApiVersions+Metadata during the 20,000-connection flood took 41-162 ms
// with -race and 26-56 ms without, on the quiet 2-core machine). Latency
// bounds are checked at their real value in a normal build (make test
// runs the flood without -race as well) and scaled by this with -race.
const raceSlowdown = 5
