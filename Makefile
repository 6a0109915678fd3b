# Every target creates or refreshes .venv itself (torch first, pinned), then runs.
# Stages: make <stage> CONFIG=my.toml [ROOT=dir] SET="key=value ..." (the stages of pipeline/chain.py)
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
TORCH_SPEC ?= torch==2.13.0
CONFIG ?= pipeline/configs/demo.toml
SET ?=
SET_ARGS := $(foreach s,$(SET),--set $(s))
ROOT ?=
ROOT_ARGS := $(if $(ROOT),--root $(ROOT))

# The real data of the tests, benchmarks and e2e (bench/shared_data.py): ../shared/data unless set.
export OWT_SHARED_DATA ?= $(abspath ../shared/data)
# tiktoken cannot download GPT-2's vocabulary without internet; use the shared cache when it is there.
SHARED_TIKTOKEN := $(OWT_SHARED_DATA)/gpt2/tiktoken-cache
ifneq ($(wildcard $(SHARED_TIKTOKEN)),)
export TIKTOKEN_CACHE_DIR ?= $(SHARED_TIKTOKEN)
endif
export PYTHONUNBUFFERED := 1
export RAY_USAGE_STATS_ENABLED := 0

.PHONY: venv stages demo test fuzz lint cluster-up cluster-down cluster-status bench-scale drills train evaluate export-hf bench-train bench-train-cpu verify publish contamination clean-demo help bench bench-harvest bench-harvest-instructions bench-fetch bench-extract bench-dedup bench-tokenize bench-contamination eval-extract eval-langid eval-dedup eval-annotators ingest reddit-api harvest-report

help:
	@echo "make demo    - the whole pipeline + a tiny GPT-2 on the embedded sample (offline)"
	@echo "make e2e     - every stage on real pages and real 2005 dumps, the funnel checked against the inputs (~3 min; E2E_ARGS=--small: the CI subset)"
	@echo "make test    - the test suite"
	@echo "make fuzz    - property-based fuzzing of the input parsers (~10 min; FUZZ_SCALE=30 times the examples of make test)"
	@echo "make <stage> - one stage of pipeline/chain.py, or train   (CONFIG=file.toml ROOT=dir SET='key=value ...')"
	@test -x $(PY) && echo "               stages: $$($(PY) -m pipeline stages)" || true
	@echo "make verify / publish / contamination - check, copy (TO=s3://...) and audit a finished corpus"
	@echo "make cluster-up / cluster-down - a local two-node Ray cluster (WORKERS=1 CPUS=1 MEMORY_GB=4)"
	@echo "make submit-<stage> / submit-all / submit-train - run on a Ray cluster as jobs (RAY_ADDRESS, CONFIG, SET)"
	@echo "make lint    - ruff and mypy"
	@echo "make bench   - benchmarks (bench-harvest, bench-fetch, bench-extract, bench-dedup, bench-tokenize, bench-contamination); figures go to BENCHMARKS.md"
	@echo "make eval-extract / eval-langid / eval-annotators - extraction F1, language decisions, annotators on real data"
	@echo "make ingest FILES='a.jsonl b.parquet' ROOT=runs/mine AT=tokenize - your own text into the pipeline"
	@echo "make drills  - kill -9 workers and drivers, damage shards: every drill checked against an uninterrupted run"

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_SPEC)
	$(PY) -m pip install -q -e ".[test,airflow]"
	touch $@

venv: $(VENV)/.installed

demo: venv
	$(PY) -m pipeline demo

# The real end-to-end run: html-benchmark, the Python docs, the Debian handbook in 26 languages and the real WARC
# captures served on loopback, a planted dump mixed with the real 2005 dumps; exits 1 if a check fails.
.PHONY: e2e
e2e: venv
	$(PY) bench/e2e.py --out runs/e2e --fresh $(E2E_ARGS)

test: venv
	$(PY) -m pytest -q

# The fuzz tests that `make test` runs with a small fixed budget, randomized and FUZZ_SCALE times longer; failures
# are kept in .hypothesis/ and replayed first next time.
FUZZ_SCALE ?= 30
fuzz: venv
	OWT_FUZZ_PROFILE=fuzz OWT_FUZZ_SCALE=$(FUZZ_SCALE) $(PY) -m pytest -q tests/pipeline/test_fuzz.py

# ruff (style, imports, bugs, formatting), then mypy over pipeline/, model/ and dags/ (the framework, the stages and
# chain.py with every function typed: pyproject.toml)
lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

stages: venv
	@$(PY) -m pipeline stages

# make <stage>: every stage pipeline/chain.py lists is a target, through this rule for targets make has no rule
# for (the stage names are not repeated here; the CLI refuses a name that is not a stage).
.DEFAULT:
	@$(MAKE) --no-print-directory venv
	$(PY) -m pipeline $@ --config $(CONFIG) $(ROOT_ARGS) $(SET_ARGS)

train: venv
	$(PY) -m model.train --config $(CONFIG) $(ROOT_ARGS) $(SET_ARGS)

# make evaluate CKPT=runs/demo/train/checkpoints/ckpt.pt DATA=runs/demo/tokens [LAMBADA=lambada_test.jsonl]
# make export-hf CKPT=... HF_DIR=runs/hf
CKPT ?= runs/demo/train/checkpoints/ckpt.pt
evaluate: venv
	$(PY) -m model.evaluate $(CKPT) $(if $(DATA),--data $(DATA)) $(if $(LAMBADA),--lambada $(LAMBADA))

export-hf: venv
	$(PY) -m model.export_hf $(CKPT) $(or $(HF_DIR),runs/hf)

# Your own Parquet/JSON Lines text, then the stages from AT on: make ingest FILES="books.jsonl" ROOT=runs/books AT=tokenize
AT ?= annotate
ingest: venv
	$(PY) -m pipeline ingest $(FILES) --root $(or $(ROOT),runs/ingest) --at $(AT) $(SET_ARGS)

# Live Reddit API -> dump files harvest reads: make reddit-api OUT=runs/api SUBREDDITS="worldnews science"
OUT ?= runs/reddit-api
SUBREDDITS ?= worldnews
reddit-api: venv
	$(PY) -m pipeline reddit-api $(OUT) $(foreach s,$(SUBREDDITS),--subreddit $(s))

# make harvest-report LINKS=runs/demo/links
LINKS ?= runs/demo/links
WEBTEXT_DOMAINS ?= ../shared/data/webtext-domains/domains.txt
harvest-report: venv
	$(PY) -m pipeline harvest-report $(LINKS) --webtext $(WEBTEXT_DOMAINS)

bench: bench-harvest bench-fetch bench-extract bench-dedup bench-tokenize bench-contamination

bench-harvest: venv
	$(PY) bench/harvest_bench.py --runs 5

# Instruction counts under valgrind (apt install valgrind): the noise-free cross-check of bench-harvest.
bench-harvest-instructions: venv
	$(PY) bench/harvest_instructions.py

bench-fetch: venv
	$(PY) bench/fetch_bench.py --runs 3

# datatrove, the peer of bench-extract, in a venv of its own: it pins trafilatura < 1.12, we use 2.x.
.venv-datatrove/.installed:
	$(PYTHON) -m venv .venv-datatrove
	.venv-datatrove/bin/pip install "datatrove[processing]==0.10.1" lxml_html_clean "spacy>=3.7,<4" "pyarrow>=15" orjson
	touch $@

bench-extract: venv .venv-datatrove/.installed
	$(PY) bench/extract_bench.py --runs 3

bench-tokenize: venv
	$(PY) bench/tokenize_bench.py --runs 7

# The contamination report's 8-gram Bloom filter on the Debian handbook: build MB/s, fp rates, insert rates.
bench-contamination: venv
	$(PY) bench/contamination_bench.py --runs 3

# GPT-2 124M, context 1024, bf16, against Hugging Face GPT2LMHeadModel in the same run (on a GPU machine);
# bench-train-cpu: the same comparison sized for a CPU.
bench-train: venv
	$(PY) bench/train_bench.py --out runs/bench-train.json

bench-train-cpu: venv
	$(PY) bench/train_bench.py --model tiny --block-size 64 --batch-size 8 --steps 20 --warmup 5 --runs 3 --device cpu --out runs/bench-train-cpu.json

# Signatures/s against datasketch; then 1M generated documents end to end on 2 cores, against datatrove's MinHash.
bench-dedup: venv .venv-datatrove/.installed
	$(PY) bench/minhash_bench.py --runs 5
	$(PY) bench/dedup_bench.py --docs $(or $(DOCS),1000000)

# Quality, measured on the real data in ../shared/data; figures go to BENCHMARKS.md.
eval-extract: venv
	$(PY) bench/eval_extract.py

eval-langid: venv
	$(PY) bench/eval_langid.py

eval-dedup: venv
	$(PY) bench/eval_dedup.py

# The annotators on real pages: quality rules' drop rates, a fastText classifier trained and scored, docs/s.
eval-annotators: venv
	$(PY) bench/eval_annotators.py

# The published corpus: make verify MANIFEST=...; make publish MANIFEST=... TO=s3://bucket/prefix;
# make contamination EVAL="lambada.jsonl cbt.txt" (CORPUS: a tokenize output or its documents/).
MANIFEST ?= runs/demo/data_manifests/owt-demo/0.1.0/manifest.json
CORPUS ?= runs/demo/tokens
verify: venv
	$(PY) -m pipeline verify $(MANIFEST)

publish: venv
	$(PY) -m pipeline publish $(MANIFEST) --to $(TO)

contamination: venv
	$(PY) -m pipeline contamination --corpus $(CORPUS) --eval $(EVAL) --out $(or $(REPORT),runs/contamination.json)

# A local Ray cluster of a head and WORKERS worker raylets (CPUS and MEMORY_GB each), and jobs submitted to it
# (or to any cluster: RAY_ADDRESS=http://head:8265). make submit-<stage> | submit-all | submit-train CONFIG=...
CLUSTER_DIR ?= runs/cluster
WORKERS ?= 1
CPUS ?= 1
MEMORY_GB ?= 4
cluster-up: venv
	$(PY) -m pipeline cluster up --dir $(CLUSTER_DIR) --workers $(WORKERS) --cpus $(CPUS) --memory-gb $(MEMORY_GB)

cluster-down: venv
	$(PY) -m pipeline cluster down --dir $(CLUSTER_DIR)

cluster-status: venv
	$(PY) -m pipeline cluster status --dir $(CLUSTER_DIR)

submit-%: venv
	$(PY) -m pipeline submit $* --config $(CONFIG) --cluster-dir $(CLUSTER_DIR) $(ROOT_ARGS) $(SET_ARGS)

SCALE_RUNS ?= 5
bench-scale: venv
	$(PY) bench/scale_bench.py --runs $(SCALE_RUNS)

# Crash and damage drills on real pages (a few minutes): docs/RELIABILITY.md
drills: venv
	$(PY) bench/fault_drills.py --out runs/drills.json

clean-demo:
	rm -rf runs/demo
