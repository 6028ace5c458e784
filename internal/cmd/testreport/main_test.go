package main

import (
	"strings"
	"testing"
)

func TestRun(t *testing.T) {
	tests := []struct {
		name     string
		in       string
		code     int
		want     []string
		dontWant []string
	}{
		{
			name: "pass and skips",
			in: `{"Action":"start","Package":"p/a"}
{"Action":"run","Package":"p/a","Test":"TestA"}
{"Action":"output","Package":"p/a","Test":"TestA","Output":"=== RUN   TestA\n"}
{"Action":"pass","Package":"p/a","Test":"TestA","Elapsed":0}
{"Action":"run","Package":"p/a","Test":"TestB/real"}
{"Action":"output","Package":"p/a","Test":"TestB/real","Output":"--- SKIP: TestB/real (0.00s)\n"}
{"Action":"skip","Package":"p/a","Test":"TestB/real","Elapsed":0}
{"Action":"output","Package":"p/a","Test":"TestB/real","Output":"    x_test.go:9: needs shared fixtures: llama3-8b-instruct (not found)\n"}
{"Action":"run","Package":"p/a","Test":"TestC"}
{"Action":"output","Package":"p/a","Test":"TestC","Output":"    x_test.go:3: not on this libtorch\n"}
{"Action":"skip","Package":"p/a","Test":"TestC","Elapsed":0}
{"Action":"pass","Package":"p/a","Elapsed":1.5}
{"Action":"skip","Package":"p/b","Elapsed":0}
`,
			code: 0,
			want: []string{"ok  \tp/a\t1.500s", "?   \tp/b\t[no test files]", "1 tests passed, 2 skipped",
				"1 of the skipped tests need the shared fixtures",
				"  skipped p/a TestB/real: needs shared fixtures: llama3-8b-instruct (not found)\n",
				"  skipped p/a TestC: not on this libtorch\n"},
			dontWant: []string{"FAIL", "x_test.go"},
		},
		{
			name: "failure shows the failing test's output",
			in: `{"Action":"run","Package":"p/a","Test":"TestOK"}
{"Action":"output","Package":"p/a","Test":"TestOK","Output":"quiet line\n"}
{"Action":"pass","Package":"p/a","Test":"TestOK"}
{"Action":"run","Package":"p/a","Test":"TestBad"}
{"Action":"output","Package":"p/a","Test":"TestBad","Output":"    x_test.go:7: got 1, want 2\n"}
{"Action":"fail","Package":"p/a","Test":"TestBad"}
{"Action":"output","Package":"p/a","Output":"FAIL\n"}
{"Action":"fail","Package":"p/a","Elapsed":0.25}
`,
			code:     1,
			want:     []string{"got 1, want 2", "FAIL\tp/a\t0.250s", "1 packages FAILED", "no test was skipped for want of shared fixtures"},
			dontWant: []string{"quiet line"},
		},
		{
			name: "a timeout shows the running test's output",
			in: `{"Action":"run","Package":"p/a","Test":"TestHang"}
{"Action":"output","Package":"p/a","Test":"TestHang","Output":"panic: test timed out after 10m0s\n"}
{"Action":"output","Package":"p/a","Output":"FAIL\tp/a\t600.0s\n"}
{"Action":"fail","Package":"p/a","Elapsed":600}
`,
			code: 1,
			want: []string{"panic: test timed out", "FAIL\tp/a\t600.000s"},
		},
		{
			name: "build failure",
			in: `{"ImportPath":"p/c","Action":"build-output","Output":"p/c/x.go:1:1: syntax error\n"}
{"ImportPath":"p/c","Action":"build-fail"}
{"Action":"start","Package":"p/c"}
{"Action":"output","Package":"p/c","Output":"FAIL\tp/c [build failed]\n"}
{"Action":"fail","Package":"p/c","Elapsed":0,"FailedBuild":"p/c"}
`,
			code: 1,
			want: []string{"syntax error", "FAIL\tp/c"},
		},
		{
			name: "no tests ran",
			in:   "go: cannot find main module\n",
			code: 1,
			want: []string{"go: cannot find main module", "0 tests passed"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out strings.Builder
			if code := run(strings.NewReader(tt.in), &out); code != tt.code {
				t.Errorf("exit code %d, want %d", code, tt.code)
			}
			for _, w := range tt.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("output lacks %q:\n%s", w, out.String())
				}
			}
			for _, w := range tt.dontWant {
				if strings.Contains(out.String(), w) {
					t.Errorf("output has %q:\n%s", w, out.String())
				}
			}
		})
	}
}
