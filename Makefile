# Initialization Matters: the two commands a newcomer types are `make book` and `make test`.
# Both create .venv from requirements.txt when it is missing or older than the package lists.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

# The environment every notebook kernel and test runs in: quiet TensorFlow, CPU only,
# stable hashing, and an IPython profile whose startup file blocks the network
# (tests/kernel_profile) and whose kernels do not forward C-level log noise into outputs.
export IPYTHONDIR            := $(CURDIR)/tests/kernel_profile
export TF_CPP_MIN_LOG_LEVEL  := 2
export CUDA_VISIBLE_DEVICES  :=
export PYTHONHASHSEED        := 0
export PYDEVD_DISABLE_FILE_VALIDATION := 1

.PHONY: help install test unit notebooks book bench execute student clean otter otter-check bootstrap test-colab test-seeds test-zoo test-canary pdf vendor-mathjax vendor-vega browser-check

help:
	@echo "make book     render the Jupyter Book to _build/html (warnings are errors)"
	@echo "make test     unit tests + every notebook with nbval + the book build (one pytest run)"
	@echo "make bench    seconds per section notebook (or NB=...), slowest first, then benchmarks"
	@echo "make execute  re-execute every notebook in place (after editing one), outputs committed"
	@echo "make bootstrap  point every notebook's first cell at the last commit of utils/ (no run)"
	@echo "make test-colab every chapter's asserts on Google Colab's versions, in .venv-colab"
	@echo "make test-seeds every chapter's asserts with every seed moved (held-out seeds)"
	@echo "make test-zoo   the tools on keras.applications, torchvision and nn.Transformer, in .venv-zoo"
	@echo "make test-canary every chapter's asserts on the newest releases (reports, never fails)"
	@echo "make student  write the student edition of every chapter to _build/student/"
	@echo "make otter    the Otter-Grader edition for Colab classes to _build/otter/"
	@echo "make otter-check  otter run on it: full points, zero, one exercise solved"
	@echo "make pdf      the whole book as one PDF in _build/latex (installs TeX Live if missing)"
	@echo "make browser-check  every page of the book in headless Chromium, offline (installs it)"
	@echo "make clean    remove _build and caches (keeps .venv)"

install: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is required, found " + sys.version.split()[0]'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

# The notebooks and tests run in WORKERS processes (pytest-xdist), a notebook's cells in one of
# them, in order (--dist loadfile): every notebook computes with one thread, so two run side by
# side on the 2-core machine without slowing each other.
WORKERS ?= 2

test: $(STAMP)
	$(PY) -m pytest -n $(WORKERS) --dist loadfile

unit: $(STAMP)
	$(PY) -m pytest tests -m "not slow"

notebooks: $(STAMP)
	$(PY) -m pytest notebooks

book: $(STAMP)
	$(PY) -m tests.book build

bench: $(STAMP)
	$(PY) -m tests.nbtools bench $(NB)

execute: $(STAMP)
	$(PY) -m tests.nbtools execute $(NB)

# After committing a change to utils/ or pyproject.toml: rewrite the first cell of every
# notebook (or of NB) to install that commit on Colab. Nothing is executed.
bootstrap: $(STAMP)
	$(PY) -m tests.nbtools bootstrap $(NB)

# Colab parity: every chapter with its asserts (nbval-lax: outputs are not compared) on Google
# Colab's versions, listed in tests/colab_runtime.txt, in .venv-colab; `utils` is installed the
# way the bootstrap cell installs it (pip, from a copy of this checkout), and tests.colab_runtime
# checks that this changed none of the pinned versions.
COLAB_VENV    := .venv-colab
COLAB_RUNTIME := tests/colab_runtime.txt
COLAB_STAMP   := $(COLAB_VENV)/.installed
COLAB_COURSE  := $(COLAB_VENV)/course

$(COLAB_STAMP): $(COLAB_RUNTIME)
	@python=$$($(PYTHON) -m tests.colab_runtime python $(COLAB_RUNTIME)) && \
	echo "Colab parity: $(COLAB_VENV) from $$python (Python $$($$python -V 2>&1 | cut -d' ' -f2))" && \
	rm -rf $(COLAB_VENV) && $$python -m venv $(COLAB_VENV)
	@start=$$(date +%s) && \
	nice -n 15 $(COLAB_VENV)/bin/python -m pip install --quiet -r $(COLAB_RUNTIME) && \
	echo "Colab parity: $(COLAB_RUNTIME) installed in $$(( $$(date +%s) - start )) s"
	touch $(COLAB_STAMP)

test-colab: $(COLAB_STAMP)
	rm -rf $(COLAB_COURSE) && mkdir -p $(COLAB_COURSE)
	cp -r pyproject.toml README.md utils $(COLAB_COURSE)/
	find $(COLAB_COURSE) -name __pycache__ -prune -exec rm -rf {} +
	$(COLAB_VENV)/bin/python -m pip uninstall --quiet --yes initialization-matters 2>/dev/null || true
	nice -n 15 $(COLAB_VENV)/bin/python -m pip install --quiet \
		"initialization-matters @ file://$(CURDIR)/$(COLAB_COURSE)"
	$(COLAB_VENV)/bin/python -m tests.colab_runtime check $(COLAB_RUNTIME)
	@# Colab's own float path: native kernels and threads (outputs are not compared here)
	@start=$$(date +%s); COURSE_FLOAT_PATH=native nice -n 15 \
	$(COLAB_VENV)/bin/python -m pytest notebooks --nbval-lax; status=$$?; \
	echo "Colab parity: chapters ran in $$(( $$(date +%s) - start )) s"; exit $$status

# Held-out seeds: every chapter with its asserts (nbval-lax: the stored outputs were made with
# the book's seeds and are not compared) under each shift of SEED_SHIFTS, which
# utils.seeding adds to every seed a chapter uses. Other shifts: make test-seeds SEED_SHIFTS="5 6".
SEED_SHIFTS ?= 1000 2027

test-seeds: $(STAMP)
	@for shift in $(SEED_SHIFTS); do \
	  start=$$(date +%s); echo "==> held-out seeds: COURSE_SEED_SHIFT=$$shift"; \
	  COURSE_SEED_SHIFT=$$shift $(PY) -m pytest notebooks --nbval-lax -q -n $(WORKERS) \
	    --dist loadfile \
	    || exit 1; \
	  echo "held-out seeds: shift $$shift passed in $$(( $$(date +%s) - start )) s"; \
	done

# The zoo: set_prior_bias, check_initial_loss, the histograms and init_report on the frameworks'
# own architectures, built offline with random weights. keras.applications and nn.Transformer
# also run in `make test` (tests/test_zoo.py); torchvision.models need torchvision, which is
# released for one torch at a time, so they run here, in .venv-zoo, built from
# requirements-zoo.txt (requirements.txt with torch 2.14.1 and torchvision 0.29.1 in place of
# its torch pin). COURSE_ZOO=1 makes a torchvision that does not import an error, not a skip.
ZOO_VENV  := .venv-zoo
ZOO_PY    := $(ZOO_VENV)/bin/python
ZOO_STAMP := $(ZOO_VENV)/.installed

$(ZOO_STAMP): requirements-zoo.txt pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is required, found " + sys.version.split()[0]'
	test -x $(ZOO_PY) || $(PYTHON) -m venv $(ZOO_VENV)
	@start=$$(date +%s) && \
	$(ZOO_PY) -m pip install --quiet --upgrade pip && \
	nice -n 15 $(ZOO_PY) -m pip install --quiet -r requirements-zoo.txt && \
	$(ZOO_PY) -m pip install --quiet --no-deps --no-build-isolation -e . && \
	echo "zoo: requirements-zoo.txt installed in $$(( $$(date +%s) - start )) s"
	touch $(ZOO_STAMP)

test-zoo: $(ZOO_STAMP)
	COURSE_ZOO=1 $(ZOO_PY) -m pytest tests/test_zoo.py tests/test_zoo_torchvision.py -q

# The canary: every chapter's asserts on the newest TensorFlow, Keras and torch from PyPI's
# default wheels (torch's CUDA build, as Colab gets), on Colab's Python, in a fresh
# .venv-canary. It reports (also to _build/canary.md) and never fails: see tests/canary.py.
test-canary:
	$(PYTHON) -m tests.canary

student: $(STAMP)
	$(PY) -m tests.classroom student

# The Otter-Grader edition (Colab classes): otter-grader from requirements-otter.txt, installed
# into .venv on top of requirements.txt (it changes none of that file's pins).
OTTER_STAMP := $(VENV)/.otter-installed

$(OTTER_STAMP): $(STAMP) requirements-otter.txt
	nice -n 15 $(PY) -m pip install --quiet -r requirements-otter.txt
	touch $(OTTER_STAMP)

otter: $(OTTER_STAMP)
	$(PY) -m tests.otter_edition build

# The proof, offline and without containers: otter run grades every chapter's solutions (full
# points), its student notebook (zero) and a Chapter 4 notebook with one exercise solved,
# WORKERS notebooks at a time.
otter-check: $(OTTER_STAMP)
	$(PY) -m pytest tests/test_otter_edition.py -q
	nice -n 15 $(PY) -m tests.otter_edition check --workers $(WORKERS)

clean:
	rm -rf _build .pytest_cache tests/kernel_profile/profile_default/history.sqlite
	find . -name __pycache__ -not -path "./$(VENV)/*" -prune -exec rm -rf {} +

# The PDF edition: XeLaTeX from Debian's TeX Live, installed here when a package is missing
# (as root, as in CI). Then the HTML book is rebuilt so that it offers the PDF for download.
TEX_PACKAGES := texlive-latex-recommended texlive-latex-extra texlive-fonts-recommended \
                texlive-xetex latexmk fonts-freefont-otf

pdf: $(STAMP)
	@missing=$$(for p in $(TEX_PACKAGES); do \
	  dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing from Debian: $$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	    apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	$(PY) -m tests.pdf_edition
	$(PY) -m tests.book build

# MathJax ships in book/_static/mathjax (committed): the combined TeX-to-HTML file of the npm
# package, its fonts and its license. This target refreshes that copy from the registry.
MATHJAX_VERSION := 3.2.2

vendor-mathjax:
	rm -rf book/_static/mathjax && mkdir -p book/_static/mathjax/output/chtml/fonts
	tmp=$$(mktemp -d) && (cd $$tmp && npm pack --silent mathjax@$(MATHJAX_VERSION) >/dev/null \
	  && tar xzf mathjax-$(MATHJAX_VERSION).tgz) \
	  && cp $$tmp/package/es5/tex-chtml-full.js $$tmp/package/LICENSE $$tmp/package/package.json \
	    book/_static/mathjax/ \
	  && cp -r $$tmp/package/es5/output/chtml/fonts/woff-v2 book/_static/mathjax/output/chtml/fonts/ \
	  && rm -rf $$tmp

# The JavaScript of the interactive figures ships in book/_static/vega (committed): the built
# bundles of the npm packages vega, vega-lite and vega-embed at the releases utils.interactive
# pins (VEGA_VERSIONS; in a live notebook the figures load the same releases from a CDN), with
# their licenses. This target refreshes that copy from the registry.
vendor-vega: $(STAMP)
	rm -rf book/_static/vega && mkdir -p book/_static/vega
	tmp=$$(mktemp -d) && for spec in $$($(PY) -c 'from utils.interactive import VEGA_VERSIONS as v; print(" ".join(f"{k}@{x}" for k, x in v.items()))'); do \
	  name=$${spec%@*}; (cd $$tmp && npm pack --silent $$spec >/dev/null && mkdir $$name && tar xzf $$name-*.tgz -C $$name) \
	  && cp $$tmp/$$name/package/build/$$name.min.js book/_static/vega/ \
	  && cp $$tmp/$$name/package/LICENSE book/_static/vega/LICENSE-$$name || exit 1; \
	done && rm -rf $$tmp

# Every page of the HTML book in Debian's headless Chromium with the network cut off: formulas
# typeset, images loaded, internal links and anchors found, no sideways scroll at 1280 px.
browser-check: $(STAMP)
	@command -v chromium >/dev/null || { echo "installing chromium from Debian"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	    apt-get install -y -qq --no-install-recommends chromium; }
	$(PY) -m tests.book build
	$(PY) -m tests.browser_check _build/html
