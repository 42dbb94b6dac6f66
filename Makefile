# Two commands: `make demo` runs the study on the embedded mini-world, `make test` checks the code
# (`make test-all` adds the slow tier: SLURM, faults, other pool layouts).
VENV := .venv
PYTHON := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
# Jobs run offline: nothing may reach for a model hub.
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
# Where PYTHONDONTWRITEBYTECODE is set (it is on this machine), every job would compile the
# modules it imports again (torch's, diffusers', transformers': 27 s for all that the jobs import,
# measured on 2 cores). Unset, the first process to import a module writes its bytecode and later
# ones read it; the writes are atomic, so jobs starting together may both write safely.
unexport PYTHONDONTWRITEBYTECODE
# glibc's malloc gives a freed block of more than 128 KB back to the kernel and maps it anew at the
# next allocation, so a CPU job that frees and allocates tensors of a few MB every step zero-fills
# fresh pages every step (1.6 to 2 million page faults in the demo's textual inversion). Kept in
# the process (both thresholds at 1 GiB), that job took 8% less time and a generation job 7% less,
# the same peak memory, and wrote the same bytes. Only the jobs make starts get these.
export MALLOC_MMAP_THRESHOLD_ := 1073741824
export MALLOC_TRIM_THRESHOLD_ := 1073741824

.PHONY: demo test test-all test-slow lint unit e2e bench clean clip-venv test-clip-service test-architectures profiles lock

# One short line per step; pip's -qq shows errors only (its warnings about index folders this
# machine lacks would fill pages). pip is told not to compile bytecode: it would compile all of
# the venv's 18,000 modules, one file at a time, where the jobs import about 4,200 of them.
# Python writes a module's bytecode the first time a process imports it (PYTHONDONTWRITEBYTECODE
# above), so each is compiled once, when first needed; compileall of the whole venv took 93 s.
# The packages are pinned in envs/venv.lock (`make lock` writes it), so nothing is resolved here:
# two pips unpack side by side, torch's stack (3 GB with its NVIDIA libraries) and the other 135
# packages, each busy on one core for about as long (41 s in all against 57 s one after the other,
# measured on 2 cores); `pip check` then proves the pinned set consistent.
PIP_PINNED := $(PYTHON) -m pip install -qq --no-compile --no-deps
TORCH_STACK := ^(torch|triton|nvidia-)
$(INSTALLED): pyproject.toml envs/venv.lock
	@echo "install 1/3: a virtual environment in $(VENV)"
	@python3 -m venv $(VENV)
	@echo "install 2/3: the pinned packages of envs/venv.lock (torch's from this machine's local wheels)"
	@grep -E '$(TORCH_STACK)' envs/venv.lock > $(VENV)/torch-stack.txt
	@grep -vE '$(TORCH_STACK)' envs/venv.lock > $(VENV)/other-packages.txt
	@$(PIP_PINNED) -r $(VENV)/torch-stack.txt & stack=$$!; \
		$(PIP_PINNED) -r $(VENV)/other-packages.txt; others=$$?; \
		wait $$stack && test $$others = 0
	@echo "install 3/3: augbench itself, editable"
	@$(PIP_PINNED) --no-build-isolation -e .
	@$(PYTHON) -m pip check > /dev/null || { $(PYTHON) -m pip check; exit 1; }
	@touch $@
	@echo "installed: $(VENV)"

# envs/venv.lock anew: what pyproject.toml asks for today, resolved in a throwaway venv (about a
# minute). Run it after changing a dependency, then `make demo` to see whether the figures moved.
lock:
	@rm -rf $(VENV)-lock && python3 -m venv $(VENV)-lock
	$(VENV)-lock/bin/python -m pip install -qq --no-compile torch==2.14.1 torchvision==0.29.1 -e '.[dev]'
	@{ sed -n '/^#/p' envs/venv.lock; $(VENV)-lock/bin/python -m pip freeze --all --exclude-editable \
		| grep -v '^pip=='; } > envs/venv.lock.new && mv envs/venv.lock.new envs/venv.lock
	@rm -rf $(VENV)-lock
	@echo "wrote envs/venv.lock"

# The run's per-seed top-1 against the figures recorded on this kind of machine (augbench.expected).
# torch's own kernels, oneDNN's convolutions and MKL pick code paths by the CPU's instruction
# set, and the paths round differently (pinning any of them changes a trained model's weights).
# Unpinned, figures differed between two Intel machines of our kind by up to 1.4 points of top-1
# per seed; pinned to AVX2, which x86 CPUs of the last decade have, they agree there. On an AMD
# EPYC they still differ: MKL honours MKL_CBWR=AVX2 on Intel CPUs only (MKL_VERBOSE shows
# CNR:AUTO there). `make demo MKL_CBWR=COMPATIBLE` takes the one path MKL keeps on every x86 CPU,
# at a fifth more time in generation and personalisation (docs/results.md).
demo: export ATEN_CPU_CAPABILITY := avx2
demo: export ONEDNN_MAX_CPU_ISA := AVX2
demo: export MKL_CBWR := AVX2
demo: $(INSTALLED)
	snakemake --profile profiles/local --configfile config.yaml
	@$(PYTHON) -m augbench.expected check --metrics-dir results/demo/metrics --expected resources/miniworld/expected.csv
	@echo "Outputs: results/demo/ (summary.csv, summary.md, per-seed metrics), logs in logs/demo/."

# The shipped profiles, copied into the user's Snakemake profile folder (~/.config/snakemake, or
# $XDG_CONFIG_HOME/snakemake) as augbench-local, slurm and slurm-gcp, so that
# `snakemake --profile slurm` works in this folder. An edited copy is kept; FORCE=1 replaces it.
profiles: $(INSTALLED)
	$(PYTHON) -m augbench.profiles install $(if $(FORCE),--force)

lint: $(INSTALLED)
	ruff check src tests benchmarks
	ruff format --check src tests benchmarks
	snakefmt --check Snakefile workflow
	snakemake --lint --configfile config.yaml
	mkdocs build --strict --quiet --site-dir site

unit: $(INSTALLED)
	pytest -m "not e2e" -q --durations=10

e2e: $(INSTALLED)
	pytest -m e2e -q --durations=10

# What runs a workflow of its own (the real SLURM, runs killed and resumed, broken inputs, pool
# layouts, an own world): about 15 minutes more. CI runs it after `make test`.
test-slow: $(INSTALLED)
	pytest -m slow -q --durations=10

# The clip_service retrieval backend and the download step in their own venv (clip-retrieval pins
# numpy<2); the workflow runs them there with service.python / download.python: .venv-clip/bin/python.
CLIP_VENV := .venv-clip
$(CLIP_VENV)/.installed:
	python3 -m venv $(CLIP_VENV)
	$(CLIP_VENV)/bin/python -m pip install --quiet torch==2.14.1 torchvision==0.29.1
	# clip-anytorch, which clip-retrieval imports, needs pkg_resources (removed in setuptools 81).
	$(CLIP_VENV)/bin/python -m pip install --quiet 'clip-retrieval>=2.44' 'setuptools<81'
	touch $@

clip-venv: $(CLIP_VENV)/.installed

# A real clip-retrieval back and img2dataset on loopback (tests/test_clip_service.py; about 4 minutes).
test-clip-service: $(INSTALLED) clip-venv
	pytest -m clip_service -q

# Real-size SD 1.5, SDXL and SD3-medium architectures with random weights at 64 px on CPU, one
# generation and personalisation step of each method through the module command lines
# (benchmarks/architectures.py; opt-in: SDXL alone holds 3.5 billion parameters).
test-architectures: $(INSTALLED)
	mkdir -p benchmarks/runs && python benchmarks/architectures.py --out benchmarks/runs/architectures.json

# The team's check, under 10 minutes from a fresh clone on 2 cores: lint, the unit tests and the
# end-to-end tests of the shared smoke run, on two pytest workers that take whole files: the smoke
# run's tests are one file (tests/conftest.py checks it), the unit tests fill the other core
# meanwhile. test-all adds test-slow.
test: lint
	pytest -m "not slow" -q -n 2 --dist loadfile --no-loadscope-reorder --durations=10

test-all: test test-slow

# Each stage against what limits it, as ratios (benchmarks/README.md); writes benchmarks/latest.json.
bench: $(INSTALLED)
	$(PYTHON) benchmarks/run.py

clean:
	# The mini-world's data is rebuilt in seconds; its pre-trained models ship with the project and stay.
	rm -rf results logs benchmarks/runs .snakemake resources/miniworld-smoke \
		resources/miniworld/classes.txt resources/miniworld/train resources/miniworld/val resources/miniworld/pool
