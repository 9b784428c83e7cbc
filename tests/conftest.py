"""Fixtures more than one test module uses."""

from __future__ import annotations

import pytest

from ijepa.data import generated
from tests.test_data import write_fmnist


@pytest.fixture
def idx(tmp_path, monkeypatch):
    """A 120-image Fashion-MNIST-shaped IDX root for the generated families (clutter, noise); their
    splits cached under tmp, the generator's memo cleared on both sides."""
    monkeypatch.setattr(generated, "CACHE_DIR", tmp_path / "cache")
    generated.generated.cache_clear()
    write_fmnist(tmp_path / "idx", n_train=120, n_val=30)
    yield tmp_path / "idx"
    generated.generated.cache_clear()
