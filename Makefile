# Two entry points: `make test` and `make demo`. Each installs whatever is missing first
# (virtualenv, every package of requirements/lock.txt, this package, Debian's Fashion-MNIST),
# idempotently. `make lock` regenerates the lock from pyproject.toml (see scripts/lock.py).
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
FMNIST := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
CHROMIUM := /usr/bin/chromium
LOCK := requirements/lock.txt
TORCH_PIN ?= torch==2.14.1 torchvision==0.29.1
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install lock data browser test demo lint gpu-wheels

install: $(STAMP)

$(PY):
	python3 -m venv $(VENV)

# Exactly the lock, then this package against it with no index: a dependency that pyproject
# asks for and the lock lacks (or pins outside its range) fails the install, naming the fix.
$(STAMP): pyproject.toml $(LOCK) | $(PY)
	$(PIP) install -q -r $(LOCK)
	$(PIP) install -q --no-index --no-build-isolation -c $(LOCK) -e '.[dev,dense]' || \
	  { echo "error: $(LOCK) is out of date with pyproject.toml (see pip's message above): run 'make lock'" >&2; exit 1; }
	touch $(STAMP)

# Resolve pyproject.toml (+ dev and dense extras) and the torch pair afresh, install nothing, write the lock.
lock: | $(PY)
	$(PY) scripts/lock.py $(TORCH_PIN)

# Wheels for the lent GPU machine, which has no package index (benchmarks/gpu_check.sh says
# how they travel): what `import ijepa`, the CLI and the GPU check need that its image lacks
# (pycocotools; pydantic, which typer imports to parse options) or may hold at other versions,
# each at the lock's version, for CPython 3.12 manylinux. torch, torchvision, numpy, scipy,
# scikit-learn, pandas, matplotlib, safetensors, huggingface-hub stay the image's own (device
# KINDS.md); segmentation-models-pytorch stays behind (only the UperNet head imports it). ~8 MB.
GPU_WHEELS ?= timm typer rich PyYAML pycocotools shellingham annotated-doc markdown-it-py mdurl Pygments \
  pydantic pydantic_core annotated-types typing-inspection typing_extensions
GPU_PLATFORMS := $(foreach p,manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64,--platform $(p))

gpu-wheels: | $(PY)
	@pins=""; for n in $(GPU_WHEELS); do \
	  pin=$$(grep -i -m1 "^$$n==" $(LOCK)) || { echo "error: $$n is not pinned in $(LOCK)" >&2; exit 1; }; pins="$$pins $$pin"; \
	done; rm -rf .whl && $(PIP) download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
	  $(GPU_PLATFORMS) -d .whl $$pins
	@ls .whl && du -sh .whl

data: $(FMNIST)

$(FMNIST):
	$(SUDO) apt-get update -q
	$(SUDO) apt-get install -y -q dataset-fashion-mnist

# Headless Chromium for the `ijepa explore` browser test (driven by Playwright, no download).
browser: $(CHROMIUM)

$(CHROMIUM):
	$(SUDO) apt-get update -q
	$(SUDO) apt-get install -y -q chromium

test: install data browser
	$(PY) -m pytest -q

lint: install
	$(VENV)/bin/ruff check ijepa tests benchmarks

# The main job on the embedded default: pretrain on Fashion-MNIST (resumes or skips a run
# that exists), score the frozen target encoder against the same architecture at random
# init (linear, k-NN, 1/5/10% low-shot; features are cached, so extraction runs once per
# encoder; linear by the head grid and by the raw-pixel baseline's logistic regression),
# write the results tables of these runs. Everything it writes lies under git-ignored runs/
# and .cache/ (records and tables in $(DEMO_RESULTS)), so the committed results/ stay as they
# are and the tree stays clean. About 45 minutes on an idle 2-core machine.
IJEPA := $(VENV)/bin/ijepa
RANDOM_INIT := --random-init vit_tiny --depth 6 --img-size 32 --patch-size 4 --in-chans 1
DEMO_RESULTS ?= runs/demo_results
DEMO := --results $(DEMO_RESULTS)

demo: install data
	$(IJEPA) pretrain --resume $(DEMO)
	$(IJEPA) eval linear --encoder runs/fmnist_vit_tiny $(DEMO)
	$(IJEPA) eval linear $(RANDOM_INIT) $(DEMO)
	$(IJEPA) eval linear --encoder runs/fmnist_vit_tiny --protocol logreg $(DEMO)
	$(IJEPA) eval linear $(RANDOM_INIT) --protocol logreg $(DEMO)
	$(IJEPA) eval knn --encoder runs/fmnist_vit_tiny $(DEMO)
	$(IJEPA) eval knn $(RANDOM_INIT) $(DEMO)
	$(IJEPA) eval lowshot --encoder runs/fmnist_vit_tiny $(DEMO)
	$(IJEPA) eval lowshot $(RANDOM_INIT) $(DEMO)
	$(IJEPA) results $(DEMO)
