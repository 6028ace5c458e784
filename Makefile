# prism: see README.md. The two commands a new machine needs are
# `make demo` and `make test`; both run `make setup` first.

GO       ?= go
LIBTORCH ?=
BUILD    ?= build
export LIBTORCH
# bash for pipefail in `make test`.
SHELL    := /bin/bash

# The PyTorch CUDA image Dockerfile.cuda builds on (-devel) and runs in
# (-runtime); prism links the libtorch inside its PyTorch.
PYTORCH_CUDA_IMAGE := pytorch/pytorch:2.6.0-cuda12.4-cudnn9
GO_VERSION         := 1.26.8

.PHONY: all setup deps build test test-debian13 check-cuda-build gpu-check fixtures demo clean vendor docker-cuda bench bench-smoke bench-train bench-decomp bench-serve bench-tokenizer bench-memory bench-dist bench-libtorch bench-report fuzz fuzz-smoke

all: build

# deps installs libtorch + OpenBLAS with apt-get when LIBTORCH is unset;
# the adapter then prepares build/gotch and go.work. Both do nothing when
# everything is in place.
deps:
	@./scripts/setup-deps.sh

setup: deps
	@GOWORK=off $(GO) run ./internal/cmd/gotch-adapt -out $(BUILD) -workfile go.work

build: setup
	$(GO) build -o bin/prism ./cmd/prism

# test prints what go test prints, then how many tests were skipped and
# which of them need the shared fixtures (the real Llama-3 tokenizer files,
# which are not in the repository: PRISM_FIXTURES, or ../shared).
test: setup
	$(GO) vet ./...
	$(GO) build -o $(BUILD)/testreport ./internal/cmd/testreport
	set -o pipefail; $(GO) test -json $(TESTFLAGS) ./... | $(BUILD)/testreport

# The libtorch 2.x lane: make setup build test inside a Debian 13 root
# (libtorch 2.6), once against libtorch-dev and once through
# LIBTORCH=/usr/bin/python3 (python3-torch). Needs root; the root is cached
# in ~/.cache/prism/debian13 (scripts/debian13.sh).
test-debian13:
	./scripts/debian13.sh test

# check-cuda-build proves prism compiles and links against a CUDA build of
# libtorch 2.x (Debian 13's libtorch-cuda-dev 2.6: CUDA 12.4, NCCL) without
# a GPU: make setup build, prism version and the CPU tests of the libtorch
# boundary, configs, data and decomposition, in a second cached root
# (~/.cache/prism/debian13-cuda, scripts/debian13-cuda.sh) whose cuDNN is a
# link-only stub. Needs root; 2.3 GB to download the first time. Not part of
# make test or CI: too heavy. Writes bench/results/cuda-build.json.
CUDA_BUILD_RESULT ?= bench/results/cuda-build.json
check-cuda-build:
	PRISM_CUDA_RESULT=$(abspath $(CUDA_BUILD_RESULT)) ./scripts/debian13-cuda.sh check

# gpu-check is the one command to run on a GPU machine (scripts/gpu-check.sh
# --help): build against its PyTorch, parity with transformers, throughput,
# memory; writes bench/results/gpu-<card>.json. GPU_CHECK_FLAGS passes
# options, e.g. --rehearse for the CPU rehearsal.
gpu-check:
	./scripts/gpu-check.sh $(GPU_CHECK_FLAGS)

# fixtures remakes testdata/tokenizers/llama3-shape and the golden ids of
# the committed tokenizers with Hugging Face's tokenizers and
# @huggingface/jinja (npm); the output is committed.
fixtures:
	cd scripts/fixtures && npm install --no-audit --no-fund --silent
	node scripts/fixtures/make-fixtures.mjs .

# The demo runs the paper's length-biased toy experiment, vanilla against
# prioritised training, for one seed (about 2 minutes on 2 cores), and
# prints the comparison table and the paths of the plots.
demo: build
	bin/prism version
	rm -rf runs/demo
	bin/prism compare --config experiments/toy/length-bias.yaml --seeds 1 --out runs/demo

# The toy study (scripts/toy-study.sh): 20 paired seeds of vanilla,
# prioritised and prompt-swap training on each toy task, then ablations of
# the prioritised arm; resumable. About an hour on 2 cores.
.PHONY: toy-study
toy-study: build
	./scripts/toy-study.sh

# Crash test of resuming (tiny CPU runs, 2-3 minutes on 2 cores): for
# vanilla and prioritised training, SIGKILLs the trainer 10 times at random
# moments (3 or more mid-checkpoint, the last one mid-save), resumes with
# --resume auto after each kill, and checks that no half-written checkpoint
# is loaded and that the outputs equal an uninterrupted run's bit for bit.
# Summary in runs/chaos/summary.json; CHAOS_FLAGS="-seed N" replays a plan.
.PHONY: chaos
chaos: build
	$(GO) run ./internal/cmd/chaos -prism bin/prism $(CHAOS_FLAGS)

# Fuzzing: every target for FUZZTIME (fuzz-smoke, in CI: 5s each).
fuzz:
	FUZZTIME=$${FUZZTIME:-10m} ./scripts/fuzz.sh

fuzz-smoke:
	FUZZTIME=5s ./scripts/fuzz.sh

# Benchmarks (not part of the tests; bench/results/README.md has the
# figures). Each compares prism with its baseline in the same command:
# bench-train times the training step against PyTorch eager on the same
# libtorch (Debian's python3-torch) after checking both compute the same
# losses; bench-decomp measures the Δr2 recompute; bench-tokenizer times
# `prism tokenize` against Hugging Face tokenizers (Rust, via npm) and
# checks the ids agree; bench-memory follows RSS over a long run.
# bench-serve loads prism serve on loopback with batching on and off.
# bench-smoke (in CI) runs a tiny pass of the harness and writes nothing.
bench: bench-train bench-decomp bench-serve bench-tokenizer bench-memory bench-dist bench-libtorch bench-report

bench-train: setup
	./scripts/bench-deps.sh
	$(GO) run ./bench/train -out bench/results/train.json

bench-decomp: setup
	$(GO) run ./bench/decomp -long-pairs 1000 -out bench/results/decomposition.json

bench-serve: build
	$(GO) run ./bench/serve -prism bin/prism -out bench/results/serve.json

bench-tokenizer: build
	./scripts/bench-deps.sh --with-npm
	$(GO) run ./bench/tokenizer -out bench/results/tokenizer.json

bench-memory: setup
	$(GO) run ./bench/memory -steps 2000 -from 200 -out bench/results/memory-tiny.json

# bench-dist times the same run with 1 process and with 2 (prism launch)
# on this machine's cores, after checking their losses agree.
bench-dist: build
	$(GO) run ./bench/dist -prism bin/prism -out bench/results/dist.json

# bench-libtorch times the toy run on libtorch 1.13 (this machine) and 2.6
# (the Debian 13 root, built here first) side by side; needs root.
bench-libtorch: build
	./scripts/debian13.sh run make build
	$(GO) run ./bench/libtorch -prism bin/prism -out bench/results/libtorch.json

bench-report:
	GOWORK=off $(GO) run ./bench/report -dir bench/results

bench-smoke: setup
	./scripts/bench-deps.sh
	$(GO) run ./bench/train -smoke -only tiny
	$(GO) run ./bench/decomp -smoke -pairs 64
	$(GO) build -o bin/prism ./cmd/prism
	$(GO) run ./bench/dist -smoke -prism bin/prism
	$(GO) run ./bench/serve -smoke -prism bin/prism

docker-cuda:
	docker build -f Dockerfile.cuda \
		--build-arg PYTORCH_IMAGE=$(PYTORCH_CUDA_IMAGE) \
		--build-arg GO_VERSION=$(GO_VERSION) \
		-t prism:cuda .

# vendor makes the tree build with no network (an air-gapped GPU box):
# every module in vendor/, plus the whole pristine gotch module in
# vendor/.gotch-pristine for the adapter. There, with Go and libtorch:
#   GOFLAGS=-mod=vendor GOPROXY=off make setup build LIBTORCH=python
vendor:
	GOWORK=off $(GO) mod vendor
	rm -rf vendor/.gotch-pristine
	cp -r "$$(GOWORK=off $(GO) mod download -json github.com/sugarme/gotch | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$$/\1/p')" vendor/.gotch-pristine
	chmod -R u+w vendor/.gotch-pristine
	@echo "vendor: done; build offline with GOFLAGS=-mod=vendor GOPROXY=off make setup build"

clean:
	rm -rf $(BUILD) bin go.work go.work.sum
