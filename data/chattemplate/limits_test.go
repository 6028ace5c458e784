package chattemplate

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ardanlabs/jinja"

	"prism/data"
)

// TestGuardsKeepOutput: the guards render nothing and leave the
// template's whitespace as it was, whitespace control included: each
// template renders the same through Render as through the engine alone.
func TestGuardsKeepOutput(t *testing.T) {
	templates := []string{
		"{% macro greet(name) %}\n  Hello {{ name }}!\n{% endmacro %}\n{% for m in messages %}\n{{ greet(m.role) }}\n{% endfor %}",
		"{%- macro greet(name) -%}\n  Hello {{ name }}!\n{%- endmacro -%}\n{%- for m in messages -%}\n  {{ greet(m.role) }}|\n{%- endfor -%}",
		"{% macro r(n) %}{% if n > 0 %}{{ n }},{{ r(n - 1) }}{% endif %}{% endmacro %}{{ r(5) }}",
		"{% for m in messages %}{% for c in m.content %}{{ loop.index }}{{ c }}{% endfor %};{% else %}none{% endfor %}",
		"{% for i in range(3) %}{{ i }}{% endfor %}{% for i in range(1, 9, 3) %}{{ i }}{% endfor %}{% for i in range(5, 0, -2) %}{{ i }}{% endfor %}",
		"{% raw %}{% for x in y %}{% macro m() %}{% endmacro %}{% endraw %}{% for m in messages %}{{ m.content }}{% endfor %}",
		"{%+ for m in messages +%} a {%- endfor %}",
	}
	msgs := []data.Message{{Role: "user", Content: "hi"}, {Role: "assistant", Content: "yo"}}
	for _, src := range templates {
		got, err := Render(&Config{Template: src}, msgs, Options{})
		if err != nil {
			t.Errorf("%q: %v", src, err)
			continue
		}
		tmpl, err := jinja.Compile(src)
		if err != nil {
			t.Fatalf("%q: %v", src, err)
		}
		list := []jinja.Value{}
		for _, m := range msgs {
			d := jinja.NewDict()
			d.AsDict().Set("role", jinja.NewString(m.Role))
			d.AsDict().Set("content", jinja.NewString(m.Content))
			list = append(list, d)
		}
		want, err := tmpl.RenderValues(map[string]jinja.Value{"messages": jinja.NewList(list)})
		if err != nil {
			t.Fatalf("%q: %v", src, err)
		}
		if got != want {
			t.Errorf("%q: guarded %q, unguarded %q", src, got, want)
		}
	}
}

// TestLimits: each hostile template fails with the limit it reached, fast,
// instead of crashing (recursion), hanging (loops) or exhausting memory.
func TestLimits(t *testing.T) {
	small := Limits{Depth: 16, Steps: 20_000, Output: 1 << 20, Time: 2 * time.Second}
	tests := []struct {
		name, src string
		lim       Limits
		limit     string
	}{
		{"self-calling macro", "{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}", DefaultLimits(), "depth"},
		{"mutual recursion", "{% macro a() %}{{ b() }}{% endmacro %}{% macro b() %}{{ a() }}{% endmacro %}{{ a() }}", DefaultLimits(), "depth"},
		{"nested loops of 10^10", "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}", small, "steps"},
		{"one huge range", "{% for i in range(10000000000) %}{% endfor %}", DefaultLimits(), "steps"},
		{"literal repetition", "{{ 'x' * 2000000000 }}", DefaultLimits(), "output"},
		{"doubling string", "{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s | length }}", small, "memory"},
		{"output past the cap", "{{ 'y' * 1500000 }}", small, "output"},
		{"slow loop", "{% for i in range(15000) %}{% for m in messages %}{{ m.content | upper | lower }}{% endfor %}{% endfor %}", Limits{Depth: 8, Steps: 1 << 30, Output: 1 << 30, Time: time.Millisecond}, "time"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			_, err := Render(&Config{Template: tt.src}, []data.Message{{Role: "user", Content: "hi"}}, Options{Limits: &tt.lim})
			var le *LimitError
			if !errors.As(err, &le) || le.Limit != tt.limit {
				t.Fatalf("err = %v, want the %s limit", err, tt.limit)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("took %v to stop", d)
			}
			if !strings.HasPrefix(err.Error(), "chat template: ") {
				t.Errorf("message %q", err)
			}
		})
	}
	// A negative repetition count is an error, not a crash.
	if _, err := Render(&Config{Template: "{{ 'x' * -1 }}"}, nil, Options{}); err == nil {
		t.Error("'x' * -1 rendered")
	}
}
