//go:build promsd_all

package main

import _ "github.com/prometheus/prometheus/discovery/install" // every Prometheus SD: minutes to build, about 100 MB

func init() { sdEvery = true }
