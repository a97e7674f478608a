//go:build promsd_kubernetes

package main

import _ "github.com/prometheus/prometheus/discovery/kubernetes" // collectors and targets on Kubernetes: about a minute more to build, 40 MB more

func init() { sdBuilt = append(sdBuilt, "kubernetes") }
