//go:build tools

// Package lint pins the linter that make test runs, apart from the main
// module so that its dependencies never reach users.
package lint

import _ "honnef.co/go/tools/cmd/staticcheck"
