# The two commands a newcomer needs:  make demo   and   make test
PY ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: setup demo test bench clean-venv ui

setup: $(STAMP)

$(STAMP): pyproject.toml requirements-nodeps.txt
	@command -v ffmpeg >/dev/null 2>&1 || (command -v apt-get >/dev/null 2>&1 && (apt-get update -qq && apt-get install -y -qq ffmpeg >/dev/null) || echo "note: ffmpeg CLI not installed (only a few reference tests use it)")
	@(command -v redis-server >/dev/null 2>&1 && ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1) || (command -v apt-get >/dev/null 2>&1 && (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql redis-server >/dev/null) || echo "note: postgresql/redis-server not installed (scale-out integration tests skip; they fail under CI=true)")
	test -x $(VENV)/bin/python || $(PY) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[test,scaleout]'
	$(VENV)/bin/pip install -q --no-deps -r requirements-nodeps.txt
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/efhq demo

test: $(STAMP)
	$(VENV)/bin/python -m pytest -q -n 2 --dist loadfile

ui: $(STAMP)
	$(VENV)/bin/efhq ui

bench: $(STAMP)
	$(VENV)/bin/python benchmarks/decode.py

clean-venv:
	rm -rf $(VENV)
