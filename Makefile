# Two entry points: `make test` and `make demo`. Each installs whatever is missing first
# (virtualenv, the pinned torch pair, this package, Debian's Fashion-MNIST), idempotently.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
FMNIST := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
CHROMIUM := /usr/bin/chromium
TORCH_PIN ?= torch==2.14.1 torchvision==0.29.1
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install data browser test demo lint

install: $(STAMP)

$(PY):
	python3 -m venv $(VENV)

$(STAMP): pyproject.toml | $(PY)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q $(TORCH_PIN)
	$(PIP) install -q -e '.[dev]'
	touch $(STAMP)

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

# The main job on the embedded default: pretrain on Fashion-MNIST, score the frozen target
# encoder against the same architecture at random init, regenerate the results tables.
demo: install data
	$(VENV)/bin/ijepa pretrain --resume
	$(VENV)/bin/ijepa eval linear --encoder runs/fmnist_vit_tiny
	$(VENV)/bin/ijepa eval linear --random-init vit_tiny --depth 6 --img-size 32 --patch-size 4 --in-chans 1
	$(VENV)/bin/ijepa results
