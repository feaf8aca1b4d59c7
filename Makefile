# returnvisit — the two commands: `make demo` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench soak clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/returnvisit demo

# Browser tests drive Debian's Chromium (never a downloaded browser); the deployment tests run the
# guide's nginx configuration in front of gunicorn. CI runs as root and installs both.
CHROMIUM := /usr/bin/chromium
NGINX := /usr/sbin/nginx

$(CHROMIUM):
	apt-get update -q && apt-get install -y -q chromium fonts-noto-cjk

$(NGINX):
	apt-get update -q && apt-get install -y -q nginx-light

test: $(STAMP) $(CHROMIUM) $(NGINX)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy models ivr/script

# Every benchmark, then one table of their figures; BENCH_ARGS="--quick" is a short smoke run,
# BENCH_ARGS="--skip-pg" SQLite only (bench/run_all.py --help lists the rest).
bench: $(STAMP)
	$(BIN)/python bench/run_all.py $(BENCH_ARGS)

# 50,000 simulated surveys through the whole loop on SQLite and PostgreSQL (not part of `make test`);
# SOAK_ARGS="--surveys 2000 --skip-pg" for a shorter one.
soak: $(STAMP)
	$(BIN)/python bench/soak.py $(SOAK_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
