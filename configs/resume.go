package configs

import (
	"fmt"
	"reflect"
	"slices"
	"strings"

	yaml "go.yaml.in/yaml/v3"
)

// freeSections may change on resume and are not compared: where the run
// lives and how it logs, evaluates, checkpoints and spreads over processes.
// Every other section is compared, so a new one is guarded until listed.
var freeSections = []string{"run", "eval", "checkpoint", "distributed"}

// resumable are the keys of compared sections that may change on resume:
// they change speed, memory or the remaining optimisation, not which
// model, data or selection the run is.
var resumable = []string{
	"model.attention",
	"train.learning_rate",
	"train.min_lr_ratio",
	"train.max_grad_norm",
	"train.max_bad_steps",
	"train.gradient_checkpointing",
	"train.micro_batch_size",
	"decomposition.batch_size",
	"decomposition.cache_prompts",
	"decomposition.plot_tag",
}

// Change is a key whose value differs between a checkpoint's configuration
// and the current one.
type Change struct {
	// Key is the dotted key, e.g. "train.learning_rate".
	Key string
	// Saved and Now are the checkpoint's and the current value, as YAML
	// (a scalar or a flow list).
	Saved, Now string
}

// String is "key: saved → now".
func (c Change) String() string {
	return c.Key + ": " + c.Saved + " → " + c.Now
}

// ResumeChanges compares the configuration a checkpoint was made with to
// the current one, key by key. refused are the differences that make the
// run another run (its model, data, objective or selection); allowed are
// the differences in keys that may change on resume. Keys of the run,
// eval, checkpoint and distributed sections are not reported. Both lists
// follow the order of the keys in Config.
func ResumeChanges(saved, current *Config) (refused, allowed []Change) {
	s, c := flatten(saved), flatten(current)
	for i, kv := range s {
		if kv.value == c[i].value {
			continue
		}
		section, _, _ := strings.Cut(kv.key, ".")
		if slices.Contains(freeSections, section) {
			continue
		}
		ch := Change{Key: kv.key, Saved: kv.value, Now: c[i].value}
		if slices.Contains(resumable, kv.key) {
			allowed = append(allowed, ch)
		} else {
			refused = append(refused, ch)
		}
	}
	return refused, allowed
}

// ResumeMismatch is the error of a resume whose checkpoint was made with a
// configuration that differs in keys that must match.
type ResumeMismatch struct {
	// Changes are the refused differences.
	Changes []Change
}

func (e *ResumeMismatch) Error() string {
	changes := make([]string, len(e.Changes))
	for i, c := range e.Changes {
		changes[i] = c.String()
	}
	free := make([]string, len(freeSections))
	for i, s := range freeSections {
		free[i] = s + ".*"
	}
	return fmt.Sprintf("the checkpoint was made with a different configuration: %s (these keys must match to resume; %s and %s may change)",
		strings.Join(changes, "; "), strings.Join(free, ", "), strings.Join(resumable, ", "))
}

// ResumeError returns a *ResumeMismatch naming the refused changes, or nil
// when there are none.
func ResumeError(refused []Change) error {
	if len(refused) == 0 {
		return nil
	}
	return &ResumeMismatch{Changes: refused}
}

// keyValue is a leaf key of Config and its value as YAML.
type keyValue struct{ key, value string }

// flatten lists every leaf key of c, in field order, with its value as
// saved. Values are compared as saved text, so NaN equals NaN and a nil
// list equals an empty one, as they do in config.yaml.
func flatten(c *Config) []keyValue {
	var out []keyValue
	var walk func(v reflect.Value, prefix string)
	walk = func(v reflect.Value, prefix string) {
		t := v.Type()
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if name == "-" {
				continue
			}
			if name == "" {
				name = strings.ToLower(f.Name) // yaml's own default
			}
			if f.Type.Kind() == reflect.Struct {
				walk(v.Field(i), prefix+name+".")
				continue
			}
			out = append(out, keyValue{prefix + name, yamlValue(v.Field(i).Interface())})
		}
	}
	walk(reflect.ValueOf(c).Elem(), "")
	return out
}

// yamlValue renders x as a YAML scalar, or a flow list or mapping.
func yamlValue(x any) string {
	var n yaml.Node
	if err := n.Encode(x); err != nil {
		return fmt.Sprint(x)
	}
	if n.Kind == yaml.SequenceNode || n.Kind == yaml.MappingNode {
		n.Style = yaml.FlowStyle
	}
	b, err := yaml.Marshal(&n)
	if err != nil {
		return fmt.Sprint(x)
	}
	return strings.TrimSuffix(string(b), "\n")
}
