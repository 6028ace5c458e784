package trainer

import (
	"math"

	"prism/configs"
)

// Schedule is the learning rate as a function of the optimizer step.
type Schedule struct {
	Base     float64
	Warmup   int
	Total    int
	Kind     configs.Schedule
	MinRatio float64
}

// LR returns the rate for the optimizer step `step` (0-based): linear
// warmup from 0, then cosine or linear decay to MinRatio*Base at Total, or
// constant. These are transformers' schedules (get_cosine_schedule_with_warmup
// and friends), with a floor.
func (s Schedule) LR(step int) float64 {
	if step < s.Warmup {
		return s.Base * float64(step) / float64(max(1, s.Warmup))
	}
	progress := float64(step-s.Warmup) / float64(max(1, s.Total-s.Warmup))
	progress = min(max(progress, 0), 1)
	var f float64
	switch s.Kind {
	case configs.ScheduleConstant:
		return s.Base
	case configs.ScheduleLinear:
		f = 1 - progress
	default: // cosine
		f = 0.5 * (1 + math.Cos(math.Pi*progress))
	}
	return s.Base * (s.MinRatio + (1-s.MinRatio)*f)
}
