# The two entry points: `make demo` and `make test`. Each builds .venv with Python 3.11 on first
# use and re-installs the project only when pyproject.toml changes (the stamp file), so nothing
# needs installing by hand and repeated runs start at once.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
STAMP := $(VENV)/.installed
GENERATED := tests/unit/test_serve_generated.py

.PHONY: demo test lint kafka browser bench clean

demo: $(STAMP)
	$(VENV)/bin/profilestream demo

# The suite in two sessions side by side, each spread over two pytest-xdist workers (whole files
# to a worker, `--dist loadfile`): the Kafka tier (`-m kafka`, every broker test again on Apache
# Kafka) beside everything else. The tests mostly wait on brokers and child processes, so four
# workers fill two cores (one session after the other, on one worker each, took over 25 minutes).
# Each worker has its own brokers and temporary directory. The schemathesis file runs on its own
# after the rest: its generated tests share one node id per operation, which xdist would run once.
test: lint kafka browser
	@mkdir -p build; \
	$(VENV)/bin/pytest -q -m kafka -n 2 --dist loadfile -p no:cacheprovider --basetemp=build/pytest-kafka > build/pytest-kafka.log 2>&1 & kafka=$$!; \
	$(VENV)/bin/pytest -q -m "not kafka" -n 2 --dist loadfile --ignore=$(GENERATED) --basetemp=build/pytest-rest; rest=$$?; \
	$(VENV)/bin/pytest -q -p no:cacheprovider $(GENERATED) || rest=1; \
	wait $$kafka; tier=$$?; \
	echo "--- the Kafka tier (pytest -m kafka), run beside the above:"; cat build/pytest-kafka.log; \
	test $$rest -eq 0 -a $$tier -eq 0

# Apache Kafka's jars for the Kafka tier of the tests (README "Apache Kafka"): fetched once with
# Maven into ~/.cache/profilestream/kafka-<version>, at once when they are there; without java
# and mvn it says so and the Kafka tier skips.
kafka: $(STAMP)
	$(VENV)/bin/python -m profilestream.devtools.apache_kafka

# Debian's chromium for the browser tests of `serve` (playwright drives it; no browser download):
# installed with apt-get when it is missing and apt-get is here (with sudo when not root); without
# it the two browser tests skip, saying why.
browser:
	@command -v chromium >/dev/null || ! command -v apt-get >/dev/null || { \
	  sudo=$$(test "$$(id -u)" -eq 0 || ! command -v sudo >/dev/null || echo sudo); \
	  $$sudo apt-get install -y --no-install-recommends chromium || \
	  { $$sudo apt-get update && $$sudo apt-get install -y --no-install-recommends chromium; }; }

# The gates before the suite: lint, format and types. mypy does not follow setuptools'
# package-dir, so it checks a copy laid out as installed (flows/ and schemas/ inside the package).
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	rm -rf build/typecheck && mkdir -p build/typecheck
	cp -r profilestream build/typecheck/ && cp -r flows build/typecheck/profilestream/flows && cp -r schemas build/typecheck/profilestream/schemas
	cd build/typecheck && ../../$(VENV)/bin/mypy --config-file ../../pyproject.toml -p profilestream

bench: $(STAMP)
	$(VENV)/bin/profilestream bench --out out/bench.json

$(STAMP): pyproject.toml
	@test -x $(VENV)/bin/python || { \
	  test -n "$(PYTHON)" || { echo "profilestream needs Python 3.11 (python3.11 or python3 on PATH)" >&2; exit 1; }; \
	  "$(PYTHON)" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' || { \
	    echo "profilestream needs Python 3.11; $(PYTHON) is $$("$(PYTHON)" --version 2>&1) (set PYTHON=/path/to/python3.11)" >&2; exit 1; }; \
	  echo "creating $(VENV) with $(PYTHON)"; \
	  "$(PYTHON)" -m venv $(VENV); }
	$(VENV)/bin/python -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

clean:
	rm -rf $(VENV)
