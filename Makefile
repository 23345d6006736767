# Two commands do all set-up: `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU build of torch; installed first so that `storysdk[torch]` pulls no CUDA packages.
TORCH ?= torch==2.13.0
PLUGIN_DIRS := $(patsubst %/pyproject.toml,%,$(wildcard plugins/*/pyproject.toml))
TEMPLATE := examples/plugin-template
DEMO_STORY ?= examples/mixed-story.toml
DEMO_OUT ?= out/demo
STAMP := $(VENV)/.storysdk-installed

.PHONY: demo test install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml $(wildcard plugins/*/pyproject.toml) $(TEMPLATE)/pyproject.toml
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install --quiet "$(TORCH)"
	$(BIN)/pip install --quiet -e ".[torch,video,serve,test]" $(foreach d,$(PLUGIN_DIRS),-e $(d))
	$(BIN)/pip install --quiet --no-deps -e $(TEMPLATE)
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/storysdk run $(DEMO_STORY) --preset auto --out $(DEMO_OUT) --overwrite

test: $(STAMP)
	$(BIN)/python -m pytest tests $(wildcard plugins/*/tests) $(TEMPLATE)/tests

clean:
	rm -rf $(VENV) out
