package main

// Every Prometheus service discovery mechanism, for prometheus_sd in the
// config. A binary of your own imports only the ones it needs.
import _ "github.com/prometheus/prometheus/discovery/install"
