# Two commands set up a bare machine (Python 3.11+ and make):
#   make lab    install into .venv and open the course in JupyterLab
#   make test   install into .venv and run the whole test suite (what CI runs)

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# JupyterLab refuses to run as root unless told; only add the flag for root.
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root)
# Browser demos and checks drive Debian's chromium; without it they are skipped, except in CI.
CHROMIUM := /usr/bin/chromium
# The queue lessons start private redis-server processes (Debian's package); elsewhere they skip, except in CI.
REDIS_SERVER := /usr/bin/redis-server

.PHONY: lab test check report stubs clean release watch gradebook

lab: $(STAMP) $(REDIS_SERVER) $(CHROMIUM)
	$(BIN)/jupyter lab --notebook-dir=notebooks --ServerApp.ip=127.0.0.1 $(ROOT_FLAG) $(LAB_ARGS)

# Four xdist processes on two cores: the suite mostly waits on servers, workers and browsers (with two
# processes it used 7 min of CPU in 10.5 min), so four finish in about 7 min.
test: $(STAMP) $(CHROMIUM) $(REDIS_SERVER)
	$(BIN)/python -m pytest -ra -n 4 --dist worksteal --target=solutions --grade-json=build/grade-solutions.json --durations=12

# Grade lessons/, then show progress over the course and the next thing to do (NUDGE=1: a more concrete hint).
check: $(STAMP) $(REDIS_SERVER) $(CHROMIUM)
	@$(BIN)/python -m course.progress $(if $(NUDGE),--nudge)

# Re-grade a lesson each time it is saved (h + Enter: a nudge; q + Enter or Ctrl-C: stop).
watch: $(STAMP) $(REDIS_SERVER) $(CHROMIUM)
	@$(BIN)/python -m course.watch

# Teachers: the student copy without answers (DIST=path, default dist/student), and a gradebook of
# every student checkout under SUBMISSIONS (GRADEBOOK=path, default gradebook.csv; LESSON_TIMEOUT=s).
DIST ?= dist/student
release: $(STAMP)
	$(BIN)/python -m course.release $(DIST)

gradebook: $(STAMP) $(REDIS_SERVER) $(CHROMIUM)
	@test -n "$(SUBMISSIONS)" || { echo "usage: make gradebook SUBMISSIONS=dir [GRADEBOOK=gradebook.csv] [LESSON_TIMEOUT=s]"; exit 2; }
	$(BIN)/python -m course.gradebook $(SUBMISSIONS) --csv $(or $(GRADEBOOK),gradebook.csv) $(if $(LESSON_TIMEOUT),--timeout $(LESSON_TIMEOUT))

report: $(STAMP)
	-$(BIN)/python -m pytest tests/graded -q --grade-json=grade.json
	@echo "JSON report: grade.json"

# Maintainers: regenerate lessons/ from solutions/ (overwrites lessons/!).
stubs: $(STAMP)
	$(BIN)/python -m course.stubs

$(CHROMIUM):
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "Installing Debian's chromium for the browser demos and checks"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else \
		echo "No $(CHROMIUM): browser cells and checks will be skipped (Debian/Ubuntu: sudo apt-get install chromium)"; \
	fi

$(REDIS_SERVER):
	@if command -v redis-server >/dev/null; then \
		: ; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "Installing Debian's redis-server for the queue lessons (the course starts its own private instances)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; \
	else \
		echo "No redis-server: the queue lessons' cells and checks will be skipped (Debian/Ubuntu: sudo apt-get install redis-server; macOS: brew install redis)"; \
	fi

clean:
	rm -rf $(VENV) build grade.json

$(STAMP): requirements.txt
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
		|| { echo "The course needs Python 3.11 or newer."; exit 1; }
	@$(PYTHON) -m venv $(VENV) 2>/dev/null || { \
		rm -rf $(VENV); \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			echo "Installing Debian's python3-venv"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null; \
		else \
			echo "Python's venv module is missing: install it (Debian/Ubuntu: sudo apt-get install python3-venv)"; exit 1; \
		fi; \
		$(PYTHON) -m venv $(VENV); }
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	@# Make course/, lessons/ and solutions/ importable from notebooks/ and anywhere else.
	$(BIN)/python -c 'import pathlib, site; pathlib.Path(site.getsitepackages()[0], "fastapi-course.pth").write_text("$(CURDIR)\n")'
	@touch $@
