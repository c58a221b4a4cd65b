# The two commands of the README. Both create or reuse .venv first (scripts/venv.sh).
.PHONY: run test lint venv benchmark leaderboard pretrain-embedded

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

# The committed embedded benchmark (configs/sweeps/embedded.yaml): resumable, then the tables.
benchmark: venv
	.venv/bin/nestbench sweep embedded
	$(MAKE) leaderboard

leaderboard: venv
	.venv/bin/nestbench leaderboard results/runs --out results/LEADERBOARD.md
	.venv/bin/nestbench leaderboard results/runs --format html --out results/leaderboard.html
	.venv/bin/nestbench leaderboard results/runs --format csv --out results/leaderboard.csv

# Remake the shipped nest-embedded (configs/pretrain/embedded.yaml, then embedded_cooldown.yaml,
# then embedded_cooldown2.yaml; about 1 h 45 min on 2 CPU cores, resumable: run it again after a
# stop).
pretrain-embedded: venv
	.venv/bin/nestbench pretrain --config embedded
	.venv/bin/nestbench pretrain --config embedded_cooldown
	.venv/bin/nestbench pretrain --config embedded_cooldown2
	cp runs/pretrain/embedded-cooldown2/last.nemo nestbench/weights/nest_embedded.nemo
