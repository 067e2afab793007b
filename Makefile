# Spotter — every target creates .venv at the repo root and installs what it needs.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
PIP     := $(BIN)/pip --disable-pip-version-check --quiet
# The functions run python3.11 (template.yaml): their build byte-compiles with it and `make template` imports each
# handler with it. Point LAMBDA_PYTHON at one if python3.11 is not on PATH (see `make lambda-python`).
LAMBDA_PYTHON ?= python3.11

# The SAM CLI lives in its own virtualenv: its pins (boto3, cfn-lint, jsonschema…) never meet the dev tools'.
SAM_VERSION := 1.170.0
SAM_VENV    := $(VENV)/sam
SAM         := $(SAM_VENV)/bin/sam
# No telemetry from build machines (and none of its network calls where only package registries are reachable).
SAM_ENV     := SAM_CLI_TELEMETRY=0

# checkov too (its pins are many and strict); tests/infra/test_template.py runs it on template.yaml.
CHECKOV_VERSION := 3.3.30
CHECKOV         := $(VENV)/checkov/bin/checkov

.PHONY: demo test check lint types template security lock sam checkov lambda-python deploy destroy bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(PIP) install --upgrade pip

# The control plane, the local stack and the test tools.
$(VENV)/.dev: pyproject.toml | $(BIN)/python
	$(PIP) install -e '.[dev]'
	touch $@

# The demo's training environment: what a GPU image carries (torch, ultralytics), installed once.
$(VENV)/.demo: pyproject.toml $(VENV)/.dev
	$(PIP) install -e '.[dev,demo]'
	touch $@

$(SAM):
	$(PY) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/pip --disable-pip-version-check --quiet install --upgrade pip
	$(SAM_VENV)/bin/pip --disable-pip-version-check --quiet install 'aws-sam-cli==$(SAM_VERSION)'

sam: $(SAM)

$(CHECKOV): | $(BIN)/python
	$(PY) -m venv $(VENV)/checkov
	$(VENV)/checkov/bin/pip --disable-pip-version-check --quiet install --upgrade pip
	$(VENV)/checkov/bin/pip --disable-pip-version-check --quiet install 'checkov==$(CHECKOV_VERSION)'

checkov: $(CHECKOV)

lambda-python:
	@$(LAMBDA_PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11)' 2>/dev/null && \
		echo "$(LAMBDA_PYTHON): Python 3.11, as the functions' runtime" || { \
		echo "No Python 3.11 at LAMBDA_PYTHON=$(LAMBDA_PYTHON). Get one, then run make with LAMBDA_PYTHON=/path/to/python3.11:"; \
		echo "  Debian/Ubuntu: sudo apt-get install python3.11 (deadsnakes PPA on Ubuntu), macOS: brew install python@3.11,"; \
		echo "  or anywhere: pyenv install 3.11 / uv python install 3.11"; exit 1; }

demo: $(VENV)/.demo
	$(BIN)/python -m infra.local demo

test: $(VENV)/.dev $(CHECKOV)
	$(BIN)/python -m pytest -n 4 --dist worksteal

lint: $(VENV)/.dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

types: $(VENV)/.dev
	$(BIN)/mypy

# Re-pin the functions' dependencies after changing pyproject's dependencies or `control` extra (needs the index).
lock: $(VENV)/.dev
	$(BIN)/python -m infra.functions lock

# `sam validate --lint` is cfn-lint run by SAM, offline: plain `sam validate` would ask IAM for the managed
# policy list, which needs credentials and the network. The region (samconfig.toml) only picks cfn-lint's specs.
# `sam build` runs the build-<Function> targets below; `verify` then imports each handler from its artifact alone.
template: $(VENV)/.dev $(SAM) $(CHECKOV) lambda-python
	$(BIN)/cfn-lint template.yaml
	$(BIN)/python -m infra.sam check template.yaml
	$(CHECKOV) -f template.yaml --framework cloudformation --compact --quiet --skip-download
	$(BIN)/python -m infra.functions check-lock
	$(SAM_ENV) $(SAM) validate --lint
	$(SAM_ENV) $(SAM) build
	$(BIN)/python -m infra.functions verify build/sam --python $(LAMBDA_PYTHON)

# bandit: no finding of medium or high severity in the shipped code (checkov scans the template in `template`);
# detect-secrets: no credential in any tracked file (a test's fake one carries `pragma: allowlist secret`).
# tests/e2e/test_secrets.py, in `make test`, checks that a whole run leaves the Slack credentials nowhere.
security: $(VENV)/.dev
	$(BIN)/bandit -q -r spotter bot lambdas agent infra bench --severity-level medium
	git ls-files -z | xargs -0 $(BIN)/detect-secrets-hook --

check: lint types template security test

# What `sam build` runs for each function (template.yaml: Metadata BuildMethod makefile), with ARTIFACTS_DIR set.
# The first builds the tree under build/functions/, the others hard-link it.
build-%Function: $(VENV)/.dev
	@test -n "$(ARTIFACTS_DIR)" || { echo "build-$*Function is run by sam build (ARTIFACTS_DIR unset)"; exit 1; }
	$(BIN)/python -m infra.functions build "$(ARTIFACTS_DIR)" --python $(LAMBDA_PYTHON)

# Into the AWS account of your credentials (README: "Deploy to your AWS account"). Options go in ARGS, e.g.
# make deploy ARGS=--replace-slack-secret, make destroy ARGS=--delete-data (python -m infra.deploy --help).
deploy: $(VENV)/.dev $(SAM) lambda-python
	$(SAM_ENV) $(BIN)/python -m infra.deploy deploy --sam $(SAM) $(ARGS)

destroy: $(VENV)/.dev
	$(BIN)/python -m infra.deploy destroy $(ARGS)

bench: $(VENV)/.dev
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build
