# kubetune — the README's commands and the usual targets.
# Every target installs what it needs into .venv first (torch from PyPI before the rest: about 10 min and
# 6.2 GB on a fresh machine, CUDA libraries included though everything here runs on the CPU).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PYTHONUNBUFFERED := 1
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_NO_ADVISORY_WARNINGS := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install demo test test-e2e lint lock-cuda crds benchmarks clean envtest s3server prometheus

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "torch==2.13.0"
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

# The quickstart: a tiny model made offline, baseline, fine-tune, evaluate, promote, serve one request.
demo: install
	$(BIN)/kubetune validate examples/
	KUBETUNE=$(BIN)/kubetune examples/quickstart/demo.sh

# The integration tests run against KMock's emulator and a real kube-apiserver + etcd (+ the garbage
# collector of kube-controller-manager), built from Go modules by `make envtest`. Without Go the
# real-server tests skip locally and fail in CI (CI=true).
test: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/basedpyright
	@hack/envtest/build.sh >/dev/null || { test "$${CI:-}" != true && echo "make test: no real API server built (see above); its tests will skip" >&2; }
	@hack/s3server/setup.sh >/dev/null || { test "$${CI:-}" != true && echo "make test: no S3 test server installed (see above); its tests will skip" >&2; }
	@hack/prometheus/setup.sh >/dev/null || { test "$${CI:-}" != true && echo "make test: no prometheus/promtool unpacked (see above); their tests will skip" >&2; }
	$(BIN)/pytest -q tests/unit tests/integration

# kube-apiserver, kube-controller-manager and etcd at the versions pinned in hack/envtest/go.mod, into
# ~/.cache/kubetune/envtest/ (needs Go 1.26 and the Go module proxy; the first build took 18 min on 2 shared cores, 238 MB,
# then it is a no-op).
envtest:
	hack/envtest/build.sh

# The S3-compatible server of the s3:// tests: moto's server mode in its own virtualenv (botocore's pins stay
# out of .venv), in ~/.cache/kubetune/s3server/ (about a minute from PyPI the first time, then a no-op).
s3server:
	hack/s3server/setup.sh

# Prometheus and promtool of the alert-rule and scrape tests: Debian's prometheus package unpacked (apt-get download +
# dpkg -x, no service started, nothing installed system-wide) into ~/.cache/kubetune/prometheus/ (a few seconds
# the first time, then a no-op).
prometheus:
	hack/prometheus/setup.sh

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/basedpyright
	$(BIN)/hadolint Dockerfile trainer-image/Dockerfile

# The CUDA trainer image's pinned packages (trainer-image/requirements-cuda.lock): pip resolves them from PyPI.
lock-cuda: install
	$(BIN)/python hack/lock_cuda.py

crds: install
	$(BIN)/kubetune crds

benchmarks: install
	$(BIN)/python benchmarks/train_throughput.py
	$(BIN)/python benchmarks/operator_scale.py

test-e2e: install
	$(BIN)/pytest -q tests/e2e

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
