package filesd

import (
	"fmt"

	"github.com/prometheus/prometheus/discovery/targetgroup"

	"github.com/promshard/promshard/internal/sdfile"
)

// Format is the encoding of a file_sd file.
type Format = sdfile.Format

// The formats Prometheus' file_sd reads.
const (
	JSON = sdfile.JSON
	YAML = sdfile.YAML
)

// ErrInvalidLabel means a label name or value would make Prometheus reject
// the whole file.
var ErrInvalidLabel = sdfile.ErrInvalidLabel

// FormatOf returns the format Prometheus infers from a file's extension:
// .json, or .yml / .yaml.
func FormatOf(path string) (Format, error) {
	f, err := sdfile.FormatOf(path)
	if err != nil {
		return "", fmt.Errorf("filesd: %w", err)
	}
	return f, nil
}

// Marshal renders groups as a file_sd file in format f. Groups keep their
// order; a target whose label set holds more than __address__ is written in
// an entry of its own with the group's labels and its own (its own win, as
// in Prometheus). Nil or empty input gives an empty list. Label names are
// checked with the legacy rules every Prometheus version accepts; a bad one
// is an [ErrInvalidLabel].
func Marshal(groups []*targetgroup.Group, f Format) ([]byte, error) {
	b, err := sdfile.Marshal(groups, f)
	if err != nil {
		return nil, fmt.Errorf("filesd: %w", err)
	}
	return b, nil
}
