// Package testenv starts the real programs the integration tests run
// against: a Consul agent in -dev mode and Prometheus servers, on free
// loopback ports, stopped when the test ends.
//
// A missing binary skips the test on a workstation and fails it in CI
// (CI=true), so a suite never passes by not running.
package testenv
