# Each target creates and fills its own virtual environment (.venv) first; all are idempotent.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install run test reproduce gradcheck bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "gradlab needs Python 3.11+, found " + sys.version.split()[0]'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -e '.[test,dask]'
	touch $@

# The main job: the tour (experiments/tour.toml) -> results/tour/ with its figures and report.html.
run: install
	$(BIN)/gradlab run

# The whole test suite (PyTorch comparisons run when torch is installed in .venv, else skip;
# the Dask tests use the dask extra installed above). Two pytest-xdist workers, then the tests marked
# `alone` (signals, kills, deadlines), one at a time with nothing beside them. TEST_WORKERS=0: one process.
TEST_WORKERS ?= 2
test: install
	status=0; \
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) -m "not alone" || status=1; \
	$(BIN)/python -m pytest -q -m alone || status=1; \
	exit $$status

# The ten reproductions of published results -> results/<name>/ (each at most 5 minutes on 2 cores).
REPRODUCTIONS := pascanu2013 glorot2010 schoenholz2017 lu2019 adding balduzzi2017 saxe2014 pennington2017 yang2019 hanin2018
reproduce: install
	status=0; for name in $(REPRODUCTIONS); do $(BIN)/gradlab reproduce $$name --quiet || status=1; done; exit $$status

gradcheck: install
	$(BIN)/gradlab gradcheck

bench: install
	$(BIN)/gradlab bench

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis
