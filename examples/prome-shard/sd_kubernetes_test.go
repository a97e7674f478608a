package main

import _ "github.com/prometheus/prometheus/discovery/kubernetes" // the tests run the Kubernetes kit's config

func init() { sdBuilt = append(sdBuilt, "kubernetes") }
