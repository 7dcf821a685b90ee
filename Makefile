# transferlab: build, publish and test.
#   make all    set up the venv, execute every notebook (PROFILE=cpu), build the book
#   make test   set up the venv and run every test (unit, ci profile end-to-end, nbval, book)
# Pins live only in requirements.txt; the venv is .venv.

SHELL := /bin/bash
.DEFAULT_GOAL := all

PYTHON_BOOT ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV        := .venv
PY          := $(VENV)/bin/python
STAMP       := $(VENV)/.installed
PROFILE     ?= cpu
# Source notebooks (outputs cleared); executed copies go to book/ under the same name.
NOTEBOOKS_DIR ?= notebooks
NOTEBOOKS   := $(sort $(wildcard $(NOTEBOOKS_DIR)/[0-9][0-9]_*.ipynb))
EXECUTED    := $(patsubst $(NOTEBOOKS_DIR)/%,book/%,$(NOTEBOOKS))
# CHAPTERS="01 02" executes only those chapters (by number) with PROFILE and leaves the others in
# book/ as they are: how a book shows gpu chapters beside cpu ones (each chapter's header and the
# front page name the profile and device of its numbers).
CHAPTERS    ?=
CHAPTER_NUMBERS := $(patsubst book/%,%,$(foreach nb,$(EXECUTED),$(firstword $(subst _, ,$(nb)))))
$(foreach c,$(CHAPTERS),$(if $(filter $(c),$(CHAPTER_NUMBERS)),,$(error The 'CHAPTERS' parameter must list chapter numbers among $(CHAPTER_NUMBERS). Got '$(c)' instead.)))
SELECTED    := $(if $(CHAPTERS),$(foreach c,$(CHAPTERS),$(filter book/$(c)_%,$(EXECUTED))),$(EXECUTED))
SUMMARY     := book/verdict_summary.md
LIBRARY     := $(shell find src -name '*.py' 2>/dev/null)
# Records the profile of the executed notebooks, so changing PROFILE re-executes them.
PROFILE_STAMP := .cache/make/profile
FAILED_DIR  := .cache/papermill-failed

.PHONY: all setup notebooks book publish test clean-book FORCE

all:
	@$(MAKE) --no-print-directory setup
	@$(MAKE) --no-print-directory notebooks
	@$(MAKE) --no-print-directory book

# ---------------------------------------------------------------- setup
setup: $(STAMP)

$(PY):
	$(PYTHON_BOOT) -m venv $(VENV)

# Re-installs only when requirements.txt or pyproject.toml changed since the last install.
# The venv takes 6.4 GiB (torch's CUDA build is 5.5): check_disk.sh stops early with a clear
# message where a first install would run out of room.
$(STAMP): requirements.txt pyproject.toml | $(PY)
	@scripts/check_disk.sh $(VENV) 7
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $@

# ---------------------------------------------------------------- notebooks
notebooks: $(SUMMARY)
	@echo "notebooks: $(words $(SELECTED)) executed notebook(s) in book/ up to date (profile $(PROFILE))"

# The intro's verdict table, read from the cached results of the chapters in book/ (each with
# the profile its notebook was executed with).
$(SUMMARY): $(SELECTED)
	$(PY) -m transferlab summary --profile $(PROFILE) --output $@

$(PROFILE_STAMP): FORCE
	@mkdir -p $(@D)
	@[ "$$(cat $@ 2>/dev/null)" = "$(PROFILE)" ] || echo "$(PROFILE)" > $@

# Execute into a temporary file next to the target and move it into place only on
# success: book/ never holds a half-written notebook. A failed run is kept for
# debugging in $(FAILED_DIR)/ (outside book/).
book/%.ipynb: $(NOTEBOOKS_DIR)/%.ipynb $(LIBRARY) $(STAMP) $(PROFILE_STAMP)
	@mkdir -p $(@D) $(FAILED_DIR)
	@echo "papermill $< -> $@ (profile $(PROFILE))"
	@tmp=$(@D)/.$(*F).running.ipynb; start=$$(date +%s); \
	if TQDM_DISABLE=1 $(VENV)/bin/papermill "$<" "$$tmp" -k python3 -p profile "$(PROFILE)" \
	     --cwd "$(<D)" --no-progress-bar --log-level WARNING; then \
	  mv -f "$$tmp" "$@"; \
	  echo "  done: $@ in $$(( $$(date +%s) - start )) s"; \
	else \
	  mv -f "$$tmp" "$(FAILED_DIR)/$(*F).ipynb" 2>/dev/null || true; \
	  echo "  FAILED: $< (partial output in $(FAILED_DIR)/$(*F).ipynb)"; exit 1; \
	fi

# ---------------------------------------------------------------- book
# --path-output book puts the HTML in book/_build/html; --all re-reads every page so
# that -W also fails on warnings of pages unchanged since the last build.
book: $(STAMP)
	$(VENV)/bin/jupyter-book build . --config _config.yml --toc book/_toc.yml \
	  --path-output book -W --keep-going --all
	@echo "book: $(CURDIR)/book/_build/html/index.html"

# Push the built book to the gh-pages branch of origin (ghp-import, installed on demand: only
# maintainers publish). .github/workflows/pages.yml is the CI alternative.
publish: book
	$(PY) -m pip install -q ghp-import==2.1.0
	$(VENV)/bin/ghp-import -n -p -f book/_build/html

clean-book:
	rm -rf book/_build

# ---------------------------------------------------------------- test
# The book is built first (from the executed notebooks in book/, seconds) so that the browser
# test can open every page in headless Chromium.
test: $(STAMP)
	@mkdir -p .cache; start=$$(date +%s); rc=0; \
	$(MAKE) --no-print-directory book > .cache/book-build.log 2>&1 || { echo "make book failed (see .cache/book-build.log)"; rc=1; }; \
	TQDM_DISABLE=1 $(PY) -m pytest -q tests || rc=$$?; \
	echo "make test: total wall time $$(( $$(date +%s) - start )) s"; exit $$rc

FORCE:
