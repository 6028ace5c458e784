// Package chattemplate renders a model's Hugging Face chat template (the
// Jinja `chat_template` of tokenizer_config.json) for a conversation, as
// transformers' apply_chat_template does.
//
// Templates are rendered with github.com/ardanlabs/jinja, with the
// whitespace settings transformers uses (trim_blocks and lstrip_blocks) and
// the variables it provides: messages, tools, documents,
// add_generation_prompt, bos_token and eos_token, and the functions
// raise_exception and strftime_now. Objects keep the key order of their
// source, as Python dicts do, so that dict iteration and tojson render as
// they do in transformers (except tojson with indent, which the engine
// writes with sorted keys).
package chattemplate
