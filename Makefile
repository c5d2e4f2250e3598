# Two front-door commands: `make demo` and `make test`. Both create .venv when missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEMO_OUT ?= demo-out

.PHONY: demo test bench install-demo install-test clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

install-demo: $(BIN)/python
	$(BIN)/pip install -e '.[clip]'

install-test: $(BIN)/python
	$(BIN)/pip install -e '.[test]'

demo: install-demo
	$(BIN)/curate demo --output $(DEMO_OUT)

test: install-test
	$(BIN)/python -m pytest

bench: install-test
	$(BIN)/pip install -e '.[bench]'
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(DEMO_OUT) bench-out
