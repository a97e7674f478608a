package promshard_test

import (
	"os"
	"strings"
	"testing"
)

// The README's embedding example is example_test.go, verbatim, so that the
// code users copy compiles and runs.
func TestREADMEShowsTheCompiledExample(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	example, err := os.ReadFile("example_test.go")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), "```go\n"+string(example)+"```") {
		t.Fatal("README.md does not hold example_test.go verbatim: copy the file into the README's embedding section")
	}
}
