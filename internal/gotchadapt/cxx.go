package gotchadapt

import (
	"fmt"
	"regexp"
	"strings"
)

// A segment is a top-level piece of a C++ file: a function definition, a
// declaration, or the text (preprocessor lines, comments) between them.
type segment struct {
	text string
	// name is the function's name when the segment is a function
	// definition, "" otherwise.
	name string
	// header is the definition up to (not including) its opening brace.
	header string
	// startLine is the 1-based line of the segment's first character.
	startLine int
}

func (s segment) lines() int { return strings.Count(s.text, "\n") }

var identBeforeParen = regexp.MustCompile(`([A-Za-z_]\w*)\s*\($`)

// splitTopLevel cuts C++ source into top-level segments. It tracks braces,
// skipping those inside comments, string and character literals and
// preprocessor lines, which is all that gotch's binding needs.
func splitTopLevel(src string) ([]segment, error) {
	var segs []segment
	start, line := 0, 1
	depth := 0
	firstBrace := -1
	atLineStart := true
	flush := func(end int) {
		if end <= start {
			return
		}
		s := segment{text: src[start:end]}
		if firstBrace >= 0 {
			s.header = src[start:firstBrace]
			s.name = funcName(s.header)
		}
		segs = append(segs, s)
		start, firstBrace = end, -1
	}
	// restOfLine returns the index just past the newline that ends the
	// line holding i.
	restOfLine := func(i int) int {
		for i < len(src) && src[i] != '\n' {
			i++
		}
		if i < len(src) {
			i++
		}
		return i
	}
	for i := 0; i < len(src); i++ {
		c := src[i]
		switch {
		case c == '\n':
			line++
			atLineStart = true
			continue
		case c == ' ' || c == '\t' || c == '\r':
			continue
		case atLineStart && c == '#':
			// A preprocessor line, with its continuations.
			j := i
			for j < len(src) && src[j] != '\n' {
				if src[j] == '\\' && j+1 < len(src) && src[j+1] == '\n' {
					j++
					line++
				}
				j++
			}
			i = j - 1 // the newline case runs next
			if depth == 0 && firstBrace < 0 {
				flush(restOfLine(j))
			}
			continue
		}
		atLineStart = false
		switch {
		case c == '/' && i+1 < len(src) && src[i+1] == '/':
			i = restOfLine(i) - 2 // stop before the newline
		case c == '/' && i+1 < len(src) && src[i+1] == '*':
			end := strings.Index(src[i+2:], "*/")
			if end < 0 {
				return nil, fmt.Errorf("line %d: unterminated comment", line)
			}
			line += strings.Count(src[i:i+2+end+2], "\n")
			i += 2 + end + 1
		case c == '"' || c == '\'':
			j := i + 1
			for ; j < len(src) && src[j] != c; j++ {
				if src[j] == '\\' {
					j++
				}
				if j < len(src) && src[j] == '\n' {
					return nil, fmt.Errorf("line %d: unterminated literal", line)
				}
			}
			if j >= len(src) {
				return nil, fmt.Errorf("line %d: unterminated literal", line)
			}
			i = j
		case c == '{':
			if depth == 0 && firstBrace < 0 {
				firstBrace = i
			}
			depth++
		case c == '}' || (c == ';' && depth == 0):
			if c == '}' {
				depth--
				if depth < 0 {
					return nil, fmt.Errorf("line %d: unbalanced '}'", line)
				}
				if depth > 0 {
					continue
				}
			}
			// The end of a top-level definition or declaration: the
			// segment takes the rest of the line (a ';' or a comment).
			end := restOfLine(i)
			if end > 0 && src[end-1] == '\n' {
				line++
			}
			i = end - 1
			atLineStart = true
			flush(end)
		}
	}
	if depth != 0 {
		return nil, fmt.Errorf("line %d: unbalanced braces at end of file", line)
	}
	flush(len(src))
	n := 1
	for k := range segs {
		segs[k].startLine = n
		n += segs[k].lines()
	}
	return segs, nil
}

// funcName returns the name of the function a definition header defines,
// or "" when the header is not a function (a namespace, a struct, ...).
func funcName(header string) string {
	h := strings.TrimSpace(header)
	p := strings.Index(h, "(")
	if p < 0 {
		return ""
	}
	m := identBeforeParen.FindStringSubmatch(h[:p+1])
	if m == nil {
		return ""
	}
	switch m[1] {
	case "if", "for", "while", "switch", "namespace", "struct", "class":
		return ""
	}
	return m[1]
}

// returnsVoid reports whether a C function header declares a void result.
func returnsVoid(header, name string) bool {
	h := stripComments(header)
	i := strings.Index(h, name+"(")
	if i < 0 {
		i = strings.Index(h, name)
	}
	if i < 0 {
		return false
	}
	return strings.TrimSpace(h[:i]) == "void"
}

func stripComments(s string) string {
	var b strings.Builder
	for _, l := range strings.Split(s, "\n") {
		t := strings.TrimSpace(l)
		if strings.HasPrefix(t, "//") {
			continue
		}
		b.WriteString(l)
		b.WriteByte('\n')
	}
	return b.String()
}

// disabledBody is the replacement definition of a C API function that this
// libtorch cannot compile: calling it sets gotch's last-error, which gotch
// turns into a Go error, and returns a zero value.
func disabledBody(seg segment, msg string) string {
	var b strings.Builder
	b.WriteString(strings.TrimRight(seg.header, " \t\n"))
	b.WriteString(" {\n")
	fmt.Fprintf(&b, "  torch_last_err = strdup(%s);\n", cString(msg))
	if !returnsVoid(seg.header, seg.name) {
		b.WriteString("  return {};\n")
	}
	b.WriteString("}\n")
	// Keep the line count so compiler line numbers still map to segments.
	for n := seg.lines() - strings.Count(b.String(), "\n"); n > 0; n-- {
		b.WriteByte('\n')
	}
	return b.String()
}

func cString(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)
	return `"` + r.Replace(s) + `"`
}
