# prism: see README.md. The two commands a new machine needs are
# `make demo` and `make test`; both run `make setup` first.

GO       ?= go
LIBTORCH ?=
BUILD    ?= build
export LIBTORCH

# The official CUDA libtorch that Dockerfile.cuda installs. Its SHA-256 is an
# input (LIBTORCH_CUDA_SHA256): take it from the download page you trust.
LIBTORCH_CUDA_VERSION := 2.1.0
LIBTORCH_CUDA_VARIANT := cu121
LIBTORCH_CUDA_SHA256  ?=
GO_VERSION            := 1.26.8

.PHONY: all setup deps build test demo clean docker-cuda bench-tokenizer bench-memory fuzz fuzz-smoke

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

test: setup
	$(GO) vet ./...
	$(GO) test ./...

# The demo runs the paper's length-biased toy experiment, vanilla against
# prioritised training, for one seed (about 2 minutes on 2 cores), and
# prints the comparison table and the paths of the plots.
demo: build
	bin/prism version
	rm -rf runs/demo
	bin/prism compare --config experiments/toy/length-bias.yaml --seeds 1 --out runs/demo

# Fuzzing: every target for FUZZTIME (fuzz-smoke, in CI: 5s each).
fuzz:
	FUZZTIME=$${FUZZTIME:-10m} ./scripts/fuzz.sh

fuzz-smoke:
	FUZZTIME=5s ./scripts/fuzz.sh

# Benchmarks (not part of the tests). bench-tokenizer times `prism tokenize`
# against the Hugging Face tokenizers library (Rust, through npm's Node
# binding) on the same text and checks the ids agree line for line.
bench-tokenizer: build
	cd bench/tokenizer && npm install --no-audit --no-fund --silent
	$(GO) run ./bench/tokenizer -out bench/results/tokenizer.json

bench-memory: setup
	$(GO) run ./bench/memory -steps 2000 -from 200 -out bench/results/memory-tiny.json

docker-cuda:
	@test -n "$(LIBTORCH_CUDA_SHA256)" || { echo "set LIBTORCH_CUDA_SHA256 to the SHA-256 of libtorch-cxx11-abi-shared-with-deps-$(LIBTORCH_CUDA_VERSION)+$(LIBTORCH_CUDA_VARIANT).zip" >&2; exit 1; }
	docker build -f Dockerfile.cuda \
		--build-arg LIBTORCH_VERSION=$(LIBTORCH_CUDA_VERSION) \
		--build-arg LIBTORCH_VARIANT=$(LIBTORCH_CUDA_VARIANT) \
		--build-arg LIBTORCH_SHA256=$(LIBTORCH_CUDA_SHA256) \
		--build-arg GO_VERSION=$(GO_VERSION) \
		-t prism:cuda .

clean:
	rm -rf $(BUILD) bin go.work go.work.sum
