# The two commands of the README. Both create or reuse .venv first (scripts/venv.sh).
.PHONY: run test lint venv

venv:
	@bash scripts/venv.sh

# The main job.
run: venv
	.venv/bin/nestbench run --task sv

# The default test suite (slow tests excluded; run them with `.venv/bin/pytest -m slow`).
test: venv
	.venv/bin/python -m pytest -q

lint: venv
	.venv/bin/ruff check . && .venv/bin/ruff format --check .
