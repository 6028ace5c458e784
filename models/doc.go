// Package models owns the reward models and what trains them: Llama-family
// decoder-only transformers (Llama, Llama-3, Mistral) with a scalar reward
// head, built from Hugging Face configs, loaded from and saved to
// safetensors; their LoRA adapters; the causal LM the decomposition's
// policy weights use; the Bradley-Terry pair loss and its backward pass
// (with gradient checkpointing); the AdamW optimizer; and the collectives
// a data-parallel run applies to weights, moments and gradients.
//
// Tensor code uses internal/torch's Scope, Pin and Device; callers speak
// in token ids, float slices and these types, never in tensors.
package models
