package audit

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// activeTarget is the part of an active target the audit reads.
type activeTarget struct {
	Address    string
	ScrapePool string
	Health     string
	LastError  string
	LastScrape time.Time
}

// answer is the part of an /api/v1/targets answer the audit reads besides
// the targets.
type answer struct {
	Status, ErrorType, Error string
}

// decodeAnswer reads an /api/v1/targets answer in one pass over b, keeping
// only the fields of answer and skipping every other value without
// building it. A large answer (10k targets of ~450 bytes each) decodes
// several times faster than with encoding/json, which scans the input
// twice and decodes field by field through reflection. Valid JSON gives
// what encoding/json gives (a fuzz test holds the two together), except
// that keys match exactly, as Prometheus writes them (encoding/json also
// takes "Status" for "status"); invalid JSON is an error or, inside values
// the audit skips, ignored.
//
// Each active target is passed to active as it is read, in order; when the
// answer holds several "activeTargets" keys, reset is called before each
// (encoding/json keeps the last).
func decodeAnswer(b []byte, active func(*activeTarget), reset func()) (answer, error) {
	d := decoder{b: b}
	var a answer
	err := d.object(func(key []byte) error {
		switch string(key) {
		case "status":
			return d.stringInto(&a.Status)
		case "errorType":
			return d.stringInto(&a.ErrorType)
		case "error":
			return d.stringInto(&a.Error)
		case "data":
			return d.object(func(key []byte) error {
				if string(key) != "activeTargets" {
					return d.skip()
				}
				reset()
				return d.array(func() error {
					var t activeTarget
					if err := d.target(&t); err != nil {
						return err
					}
					active(&t)
					return nil
				})
			})
		}
		return d.skip()
	})
	if err != nil {
		return answer{}, err
	}
	if d.ws(); d.i != len(d.b) {
		return answer{}, d.errorf("data after the answer")
	}
	return a, nil
}

type decoder struct {
	b []byte
	i int
	// the last values of fields that repeat across targets (pool, health),
	// so that each target does not allocate its own copy
	pool, health string
}

func (d *decoder) errorf(format string, args ...any) error {
	return fmt.Errorf("offset %d: %s", d.i, fmt.Sprintf(format, args...))
}

func (d *decoder) ws() {
	for d.i < len(d.b) {
		switch d.b[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

// expect consumes c after white space.
func (d *decoder) expect(c byte) error {
	d.ws()
	if d.i >= len(d.b) || d.b[d.i] != c {
		return d.errorf("want %q", c)
	}
	d.i++
	return nil
}

// null consumes a null, reporting whether there was one.
func (d *decoder) null() bool {
	d.ws()
	if d.i+4 <= len(d.b) && string(d.b[d.i:d.i+4]) == "null" {
		d.i += 4
		return true
	}
	return false
}

// object calls field for each key of an object (or nothing for null); field
// must consume the value.
func (d *decoder) object(field func(key []byte) error) error {
	if d.null() {
		return nil
	}
	if err := d.expect('{'); err != nil {
		return err
	}
	d.ws()
	if d.i < len(d.b) && d.b[d.i] == '}' {
		d.i++
		return nil
	}
	for {
		key, esc, err := d.rawString()
		if err != nil {
			return err
		}
		if esc {
			var k string
			if err := json.Unmarshal(d.b[d.i-len(key)-2:d.i], &k); err != nil {
				return d.errorf("bad key: %v", err)
			}
			key = []byte(k)
		}
		if err := d.expect(':'); err != nil {
			return err
		}
		if err := field(key); err != nil {
			return err
		}
		d.ws()
		if d.i >= len(d.b) {
			return d.errorf("unterminated object")
		}
		switch d.b[d.i] {
		case ',':
			d.i++
		case '}':
			d.i++
			return nil
		default:
			return d.errorf("want , or }")
		}
	}
}

// array calls elem for each element of an array (or nothing for null).
func (d *decoder) array(elem func() error) error {
	if d.null() {
		return nil
	}
	if err := d.expect('['); err != nil {
		return err
	}
	d.ws()
	if d.i < len(d.b) && d.b[d.i] == ']' {
		d.i++
		return nil
	}
	for {
		if err := elem(); err != nil {
			return err
		}
		d.ws()
		if d.i >= len(d.b) {
			return d.errorf("unterminated array")
		}
		switch d.b[d.i] {
		case ',':
			d.i++
		case ']':
			d.i++
			return nil
		default:
			return d.errorf("want , or ]")
		}
	}
}

// rawString consumes a string and returns its bytes between the quotes,
// and whether they hold an escape. Control characters, which JSON does not
// allow in a string, are not looked for: a string the audit keeps is
// checked by stringInto, one it skips does not matter.
func (d *decoder) rawString() (raw []byte, escaped bool, err error) {
	if err := d.expect('"'); err != nil {
		return nil, false, err
	}
	start := d.i
	end := bytes.IndexByte(d.b[start:], '"')
	if end < 0 {
		return nil, false, d.errorf("unterminated string")
	}
	if bytes.IndexByte(d.b[start:start+end], '\\') < 0 {
		d.i = start + end + 1
		return d.b[start : start+end], false, nil
	}
	for d.i < len(d.b) {
		switch d.b[d.i] {
		case '"':
			d.i++
			return d.b[start : d.i-1], true, nil
		case '\\':
			d.i += 2
		default:
			d.i++
		}
	}
	return nil, false, d.errorf("unterminated string")
}

// stringInto decodes a string (null leaves dst alone, as encoding/json
// does).
func (d *decoder) stringInto(dst *string) error {
	if d.null() {
		return nil
	}
	raw, esc, err := d.rawString()
	if err != nil {
		return err
	}
	if !esc && utf8.Valid(raw) && !hasControl(raw) {
		*dst = string(raw)
		return nil
	}
	if err := json.Unmarshal(d.b[d.i-len(raw)-2:d.i], dst); err != nil {
		return d.errorf("bad string: %v", err)
	}
	return nil
}

// internInto decodes a string into dst, reusing *last when it is the same
// value (comparing bytes does not allocate).
func (d *decoder) internInto(dst, last *string) error {
	start := d.i
	d.ws()
	if d.i < len(d.b) && d.b[d.i] == '"' && !strings.ContainsAny(*last, "\\\"") {
		if j := d.i + 1 + len(*last); j < len(d.b) && d.b[j] == '"' && string(d.b[d.i+1:j]) == *last {
			*dst, d.i = *last, j+1
			return nil
		}
	}
	d.i = start
	if err := d.stringInto(dst); err != nil {
		return err
	}
	*last = *dst
	return nil
}

func hasControl(b []byte) bool {
	for _, c := range b {
		if c < 0x20 {
			return true
		}
	}
	return false
}

func (d *decoder) target(t *activeTarget) error {
	return d.object(func(key []byte) error {
		switch string(key) {
		case "discoveredLabels":
			return d.object(func(key []byte) error {
				if string(key) == "__address__" {
					return d.stringInto(&t.Address)
				}
				return d.skip()
			})
		case "scrapePool":
			return d.internInto(&t.ScrapePool, &d.pool)
		case "health":
			return d.internInto(&t.Health, &d.health)
		case "lastError":
			return d.stringInto(&t.LastError)
		case "lastScrape":
			if d.null() {
				return nil
			}
			var s string
			if err := d.stringInto(&s); err != nil {
				return err
			}
			if err := t.LastScrape.UnmarshalText([]byte(s)); err != nil { // as encoding/json parses it
				return d.errorf("lastScrape: %v", err)
			}
			return nil
		}
		return d.skip()
	})
}

// skipComposite consumes an object or array by counting brackets outside
// strings, without looking at keys and values one by one: it is most of
// an answer (labels, URLs, dropped targets). Brackets that do not pair up
// are not noticed, as the audit keeps nothing from inside.
func (d *decoder) skipComposite() error {
	depth := 0
	for d.i < len(d.b) {
		switch d.b[d.i] {
		case '"':
			if _, _, err := d.rawString(); err != nil {
				return err
			}
			continue
		case '{', '[':
			depth++
		case '}', ']':
			if depth--; depth == 0 {
				d.i++
				return nil
			}
		}
		d.i++
	}
	return d.errorf("unterminated object or array")
}

// skip consumes any value.
func (d *decoder) skip() error {
	d.ws()
	if d.i >= len(d.b) {
		return d.errorf("want a value")
	}
	switch c := d.b[d.i]; {
	case c == '"':
		_, _, err := d.rawString()
		return err
	case c == '{' || c == '[':
		return d.skipComposite()
	case c == '-' || c >= '0' && c <= '9':
		start := d.i
		for d.i < len(d.b) && strings.IndexByte("+-.0123456789eE", d.b[d.i]) >= 0 {
			d.i++
		}
		if d.i == start+1 && c == '-' {
			return d.errorf("bad number")
		}
		return nil
	default:
		for _, lit := range []string{"true", "false", "null"} {
			if strings.HasPrefix(string(d.b[d.i:min(len(d.b), d.i+5)]), lit) {
				d.i += len(lit)
				return nil
			}
		}
		return d.errorf("want a value")
	}
}
