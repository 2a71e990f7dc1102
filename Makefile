# The two README commands. Both build the virtual environment themselves on first use.
#   make demo   the main job: every pipeline notebook through papermill on the embedded sample catalogue
#   make test   clean check, export-in-sync check, every notebook's tests (nbdev_test), the tools' tests (pytest tools/),
#               then the offline docs check; non-zero on any failure
SHELL := /bin/bash
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export PYTHONUNBUFFERED := 1
export MPLBACKEND := Agg

.PHONY: install demo ablations test export clean-nbs readme docs-check docs-lint figures gpu-check lab

# GPU=1 (make install GPU=1, make gpu-check GPU=1): swap faiss-cpu for faiss-gpu after the normal install. Both wheels
# ship the same `faiss` module, so one replaces the other; faiss-gpu brings its own CUDA 12 runtime wheels.
GPU ?= 0
FAISS_GPU := $(VENV)/.faiss-gpu
install: $(STAMP) $(if $(filter 1,$(GPU)),$(FAISS_GPU))

$(FAISS_GPU): $(STAMP)
	$(BIN)/python -m pip uninstall -y -q faiss-cpu
	$(BIN)/python -m pip install -q --disable-pip-version-check 'faiss-gpu>=1.15'
	$(BIN)/python -c "import faiss; print('faiss', faiss.__version__, 'with', faiss.get_num_gpus(), 'GPU(s) visible')"
	touch $@

$(STAMP): settings.ini setup.py
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	rm -f $(FAISS_GPU)   # the editable install below brings faiss-cpu back: GPU=1 swaps it again
	set -o pipefail; $(BIN)/python -m pip install -q --disable-pip-version-check -e '.[dev]' 2>&1 | { grep -v 'is ignored: it is neither a file nor a directory' || true; }
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name python3 >/dev/null   # what the notebooks store: opening one changes nothing
	touch $(STAMP)

# JupyterLab on the project's environment; notebooks are cleaned as they are saved (aliret.testing.lab_pre_save: nbdev's
# pre-save hook, and nbs/ notebooks keep the outputs they have on disk: results live in outputs/), so a notebook run in
# the Lab leaves git status as it was. LAB_ARGS passes more options, e.g. LAB_ARGS='--no-browser --port 8899'.
lab: install
	$(BIN)/jupyter lab --notebook-dir=. --ContentsManager.pre_save_hook=aliret.testing.lab_pre_save $(if $(filter 0,$(shell id -u)),--allow-root) $(LAB_ARGS)

# Main job: one papermill step per notebook, each into outputs/<run>/<step>/; re-running resumes at the first unfinished step.
RUN ?= demo
demo: install
	$(BIN)/aliret-pipeline --run $(RUN)

# The ablation table (11a_ablations): every technique against its ablation, 7 paired seeds, val in demo-sized blocks.
# Its own job (56 trainings of the demo's size and 14 short fine-tunes: about 3 hours on 2 cores), resumable like the demo; the demo's summary
# links the newest table. A subset: papermill nbs/11a_ablations.ipynb out.ipynb -p arms clip,clip_xbm
ablations: install
	$(BIN)/aliret-pipeline --job ablations --run $(if $(filter demo,$(RUN)),ablations,$(RUN))

export: install
	$(BIN)/nbdev_export

# Jupyter's own notebook format first (cell sources as lists of lines, what a save from the Lab writes), then nbdev's clean.
clean-nbs: install
	$(BIN)/python -c "import glob, nbformat; [nbformat.write(nbformat.read(f, 4), f) for f in glob.glob('nbs/*.ipynb')]"
	$(BIN)/nbdev_clean

test: install
	BIN=$(BIN) bash .ci/test-suite.sh

# README.md is index.ipynb's prose (nbdev_readme needs Quarto, which is not always installable).
readme: install
	$(BIN)/python -c "import nbformat; nb = nbformat.read('nbs/index.ipynb', 4); open('README.md', 'w').write('\n\n'.join(c.source for c in nb.cells if c.cell_type == 'markdown') + '\n')"

# Offline docs check (no Quarto; developer tooling in tools/, see tools/README.md): nbdev's processing of every
# notebook -> _site_offline/, each page checked in headless Chromium (Debian's chromium package).
# docs-lint finds cells that would break nbdev's docs build.
docs-check: install
	$(BIN)/python tools/docs_check.py

docs-lint: install
	$(BIN)/python tools/docs_check.py --lint

# Refresh the figures the docs show from a finished main-job run (`make demo` first), then clean the notebooks.
figures: install
	$(BIN)/python tools/docs_check.py --store-figures outputs/$(RUN)
	$(BIN)/nbdev_clean

# One-shot GPU check (one CUDA GPU, a few minutes): every `#| cuda` cell, then the GPU rows (embedding, ITM, search,
# bf16/fp16 training) into outputs/benchmarks/<date>-<gpu>-gpucheck.json. Nothing downloads: random weights.
gpu-check: install
	set -e; for nb in $$(grep -l '#| cuda' nbs/*.ipynb); do $(BIN)/nbdev_test --flags cuda --path $$nb; done
	$(BIN)/python -m aliret.gpucheck --device cuda
