//go:build tools

// Package tools pins the Consul server that the integration tests start as
// `consul agent -dev`. It lives in its own module so that the library's go.mod
// never carries Consul's server dependency tree.
package tools

import _ "github.com/hashicorp/consul"
