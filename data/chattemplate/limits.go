package chattemplate

import (
	"fmt"
	"regexp"
	"runtime/metrics"
	"strconv"
	"strings"
	"time"

	"github.com/ardanlabs/jinja"
)

// Limits bound one rendering. Chat templates come with model folders, so
// they are untrusted code: the Jinja engine has no limits of its own, and a
// self-calling macro overflows the goroutine stack (a crash no recover
// catches), nested loops run for hours and string repetition allocates
// without bound. Render enforces these from outside the engine: the
// template's source gets guard calls at the start and end of every macro
// and in every loop body (inert tags that print nothing and keep the
// template's whitespace), range is replaced by a bounded one, literal
// repetition counts are checked before rendering, and the output is
// measured after it.
type Limits struct {
	// Depth bounds macro calls nested in one another.
	Depth int
	// Steps bounds loop iterations plus macro calls, and the length of
	// one range.
	Steps int
	// Output bounds the rendered text in bytes; the heap may grow by at
	// most 8 times as much while rendering.
	Output int
	// Time bounds the wall time of one rendering.
	Time time.Duration
}

// DefaultLimits are far above what any released chat template needs (a
// conversation renders in microseconds to milliseconds, a few kilobytes
// to a few megabytes).
func DefaultLimits() Limits {
	return Limits{Depth: 64, Steps: 1_000_000, Output: 16 << 20, Time: 10 * time.Second}
}

// LimitError reports a limit a rendering reached. It is the template's
// fault, not the conversation's: callers stop rather than skip the row.
type LimitError struct {
	// Limit names it: depth, steps, output, memory or time.
	Limit string
	Msg   string
	// Source is the template's Config.Source.
	Source string
}

func (e *LimitError) Error() string {
	if e.Source != "" {
		return "chat template " + e.Source + ": " + e.Msg
	}
	return "chat template: " + e.Msg
}

// Names of the guard callables; prefixed so no template uses them.
const (
	guardEnter = "__prism_limit_enter"
	guardLeave = "__prism_limit_leave"
	guardTick  = "__prism_limit_tick"
)

var (
	// Block tags that open a macro or a loop, and the tag that closes a
	// macro, with their whitespace control.
	macroOpen  = regexp.MustCompile(`\{%(-|\+)?\s*macro\s(?:[^%]|%[^}])*?(-|\+)?%\}`)
	forOpen    = regexp.MustCompile(`\{%(-|\+)?\s*for\s(?:[^%]|%[^}])*?(-|\+)?%\}`)
	macroClose = regexp.MustCompile(`\{%(-|\+)?\s*endmacro\b(?:[^%]|%[^}])*?(-|\+)?%\}`)
	rawBlock   = regexp.MustCompile(`(?s)\{%-?\s*raw\s*-?%\}.*?\{%-?\s*endraw\s*-?%\}`)
	// repeatLiteral finds `* N` with an integer literal.
	repeatLiteral = regexp.MustCompile(`\*\s*(\d{7,})`)
)

// guardSource inserts the limit guards into a template's source. A guard
// is `{% if guard() %}{% endif %}`: block tags, so trim_blocks and
// lstrip_blocks treat the text around them as they treated it around the
// tag they follow or precede, and the whitespace control of that tag is
// carried over to the guard's outer side. Raw blocks are left alone.
func guardSource(src string) string {
	var b strings.Builder
	last := 0
	for _, m := range rawBlock.FindAllStringIndex(src, -1) {
		b.WriteString(guardPart(src[last:m[0]]))
		b.WriteString(src[m[0]:m[1]])
		last = m[1]
	}
	b.WriteString(guardPart(src[last:]))
	return b.String()
}

func guardPart(s string) string {
	after := func(re *regexp.Regexp, guard string) {
		s = re.ReplaceAllStringFunc(s, func(tag string) string {
			right := re.FindStringSubmatch(tag)[2]
			return tag + "{% if " + guard + "() %}{% endif " + right + "%}"
		})
	}
	after(macroOpen, guardEnter)
	after(forOpen, guardTick)
	s = macroClose.ReplaceAllStringFunc(s, func(tag string) string {
		left := macroClose.FindStringSubmatch(tag)[1]
		return "{%" + left + " if " + guardLeave + "() %}{% endif %}" + tag
	})
	return s
}

// checkLiterals refuses repetition by an integer literal that alone would
// pass the output limit (`'x' * 2000000000` allocates before any guard
// runs).
func checkLiterals(src string, lim Limits) error {
	for _, m := range repeatLiteral.FindAllStringSubmatch(src, -1) {
		if n, err := strconv.ParseInt(m[1], 10, 64); err != nil || n > int64(lim.Output) {
			return &LimitError{Limit: "output", Msg: fmt.Sprintf("the template multiplies by %s, more than the output limit of %d bytes", m[1], lim.Output)}
		}
	}
	return nil
}

// budget is one rendering's use of its limits.
type budget struct {
	lim        Limits
	depth      int
	steps      int
	start      time.Time
	heap0      uint64
	heapSample []metrics.Sample
}

func newBudget(lim Limits) *budget {
	b := &budget{lim: lim, start: time.Now(), heapSample: []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}}
	b.heap0 = b.heap()
	return b
}

func (b *budget) heap() uint64 {
	metrics.Read(b.heapSample)
	if b.heapSample[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return b.heapSample[0].Value.Uint64()
}

// step counts one loop iteration or macro call and checks the budget.
// The clock and the heap are read at every step (a fraction of a
// microsecond): a loop that doubles a string reaches any bound within a
// few dozen steps.
func (b *budget) step() error {
	b.steps++
	if b.steps > b.lim.Steps {
		return &LimitError{Limit: "steps", Msg: fmt.Sprintf("more than %d loop iterations and macro calls", b.lim.Steps)}
	}
	if d := time.Since(b.start); d > b.lim.Time {
		return &LimitError{Limit: "time", Msg: fmt.Sprintf("still rendering after %v (the limit)", b.lim.Time)}
	}
	if h := b.heap(); h > b.heap0 && h-b.heap0 > 8*uint64(b.lim.Output) {
		return &LimitError{Limit: "memory", Msg: fmt.Sprintf("the heap grew by %d MiB while rendering (limit %d MiB)", (h-b.heap0)>>20, 8*b.lim.Output>>20)}
	}
	return nil
}

// vars are the guard callables and the bounded range, for the template's
// top scope (it shadows the engine's builtins).
func (b *budget) vars() map[string]jinja.Value {
	inert := jinja.NewBool(false)
	return map[string]jinja.Value{
		guardEnter: jinja.NewCallable(guardEnter, func([]jinja.Value, map[string]jinja.Value) (jinja.Value, error) {
			if b.depth++; b.depth > b.lim.Depth {
				return inert, &LimitError{Limit: "depth", Msg: fmt.Sprintf("macro calls nested more than %d deep (a macro that calls itself without end?)", b.lim.Depth)}
			}
			return inert, b.step()
		}),
		guardLeave: jinja.NewCallable(guardLeave, func([]jinja.Value, map[string]jinja.Value) (jinja.Value, error) {
			b.depth--
			return inert, nil
		}),
		guardTick: jinja.NewCallable(guardTick, func([]jinja.Value, map[string]jinja.Value) (jinja.Value, error) {
			return inert, b.step()
		}),
		"range": jinja.NewCallable("range", b.rangeFunc),
	}
}

// rangeFunc is Python's range(stop) / range(start, stop[, step]) with at
// most Steps items.
func (b *budget) rangeFunc(args []jinja.Value, _ map[string]jinja.Value) (jinja.Value, error) {
	var ints []int64
	for _, a := range args {
		if !a.IsInt() {
			return jinja.Undefined(), fmt.Errorf("range: want integers, got %s", a.String())
		}
		ints = append(ints, a.AsInt())
	}
	var start, stop, step int64 = 0, 0, 1
	switch len(ints) {
	case 1:
		stop = ints[0]
	case 2:
		start, stop = ints[0], ints[1]
	case 3:
		start, stop, step = ints[0], ints[1], ints[2]
	default:
		return jinja.Undefined(), fmt.Errorf("range: want 1 to 3 arguments, got %d", len(ints))
	}
	if step == 0 {
		return jinja.Undefined(), fmt.Errorf("range: step must not be zero")
	}
	var n float64
	if step > 0 && stop > start {
		n = (float64(stop) - float64(start)) / float64(step)
	} else if step < 0 && stop < start {
		n = (float64(start) - float64(stop)) / -float64(step)
	}
	if n > float64(b.lim.Steps) {
		return jinja.Undefined(), &LimitError{Limit: "steps", Msg: fmt.Sprintf("range of %.0f items, more than the %d-step limit", n, b.lim.Steps)}
	}
	items := make([]jinja.Value, 0, int(n)+1)
	for i := start; (step > 0 && i < stop) || (step < 0 && i > stop); i += step {
		items = append(items, jinja.NewInt(i))
	}
	return jinja.NewList(items), nil
}
