package configs

// Schedule is train.schedule: the learning-rate decay after warmup.
type Schedule string

// The learning-rate schedules.
const (
	ScheduleCosine   Schedule = "cosine"
	ScheduleLinear   Schedule = "linear"
	ScheduleConstant Schedule = "constant"
)

// Trainable is train.trainable: which parameters train.
type Trainable string

// What trains.
const (
	// TrainableAll trains every parameter (or, with LoRA, the adapters and
	// the score head).
	TrainableAll Trainable = "all"
	// TrainableHead trains the score layer only.
	TrainableHead Trainable = "head"
	// TrainableTopLayers trains the score layer, the final norm and the top
	// train.trainable_top_layers blocks.
	TrainableTopLayers Trainable = "top_layers"
)

// Truncation is data.truncation: what happens to pairs longer than
// data.max_length.
type Truncation string

// The truncation policies.
const (
	// TruncationDrop skips over-long pairs.
	TruncationDrop Truncation = "drop"
	// TruncationLeft keeps the end of each sequence.
	TruncationLeft Truncation = "left"
)

// Strategy is decomposition.strategy: how the prompt-free gaps select the
// pairs of the next phase.
type Strategy string

// The selection strategies.
const (
	// StrategyLowestFraction selects the decomposition.rho fraction with
	// the smallest prompt-free gap.
	StrategyLowestFraction Strategy = "lowest_fraction"
	// StrategyThreshold selects the pairs whose gap is below
	// decomposition.threshold.
	StrategyThreshold Strategy = "threshold"
	// StrategySoftmax draws pairs with probability ∝ exp(-gap /
	// decomposition.temperature).
	StrategySoftmax Strategy = "softmax"
)

// Weights is decomposition.weights: the importance weights over the
// sampled prompts.
type Weights string

// The prompt weightings.
const (
	// WeightsUniform weighs every sampled prompt equally.
	WeightsUniform Weights = "uniform"
	// WeightsPolicy weighs prompts by the likelihood of both responses
	// under decomposition.policy_model.
	WeightsPolicy Weights = "policy"
)

// names returns enum values as strings, for the validation errors.
func names[T ~string](values ...T) []string {
	out := make([]string, len(values))
	for i, v := range values {
		out[i] = string(v)
	}
	return out
}
