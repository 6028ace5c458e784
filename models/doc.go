// Package models owns the reward models: Llama-family decoder-only
// transformers with a scalar reward head, built from Hugging Face configs and
// loaded from and saved to safetensors.
package models
