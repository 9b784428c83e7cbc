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

# The main job on the embedded default: pretrain on Fashion-MNIST (resumes or skips a run
# that exists), score the frozen target encoder against the same architecture at random
# init (linear, k-NN, 1/5/10% low-shot; features are cached, so extraction runs once per
# encoder; linear by the head grid and by the raw-pixel baseline's logistic regression),
# regenerate the results tables. About 45 minutes on an idle 2-core machine.
IJEPA := $(VENV)/bin/ijepa
RANDOM_INIT := --random-init vit_tiny --depth 6 --img-size 32 --patch-size 4 --in-chans 1

demo: install data
	$(IJEPA) pretrain --resume
	$(IJEPA) eval linear --encoder runs/fmnist_vit_tiny
	$(IJEPA) eval linear $(RANDOM_INIT)
	$(IJEPA) eval linear --encoder runs/fmnist_vit_tiny --protocol logreg
	$(IJEPA) eval linear $(RANDOM_INIT) --protocol logreg
	$(IJEPA) eval knn --encoder runs/fmnist_vit_tiny
	$(IJEPA) eval knn $(RANDOM_INIT)
	$(IJEPA) eval lowshot --encoder runs/fmnist_vit_tiny
	$(IJEPA) eval lowshot $(RANDOM_INIT)
	$(IJEPA) results
