//go:build !race

package kafka

// raceSlowdown: see race_on_test.go.
const raceSlowdown = 1
