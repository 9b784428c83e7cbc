"""The attentive probe learns what average pooling cannot see: a class signal carried by one
token at a random position, drowned by the mean of the others."""

from __future__ import annotations

import torch

from ijepa.evals.attentive import AttentiveSpec, score, train_probes
from ijepa.evals.core.features import Tokens


def tokens(n: int, seed: int) -> Tokens:
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    x = torch.randn(n, 8, 16, generator=g)
    marker = torch.eye(16)[:3] * 4  # class c: one token is a strong +e_c, anywhere in the sequence
    pos = torch.randint(0, 8, (n,), generator=g)
    x[torch.arange(n), pos] = marker[y] + 0.1 * torch.randn(n, 16, generator=g)
    return Tokens(x.half(), y)


def test_probes_train_independently_and_learn_a_one_token_signal():
    train, test = tokens(600, 0), tokens(300, 1)
    spec = AttentiveSpec(epochs=15, batch_size=64, warmup_epochs=1, probe_heads=2)
    probes = train_probes(train, [(3e-3, 0.01), (1e-9, 0.01)], num_classes=3, spec=spec, device=torch.device("cpu"), seed=0)
    (good, _), (frozen, _) = score(probes, test, device=torch.device("cpu"))
    assert good > 0.9 and frozen < 0.6, (good, frozen)  # the lr=1e-9 probe stays near chance: no coupling between probes
    mean_pool = torch.nn.functional.one_hot(train.tokens.float().mean(1).argmax(1), 16)[:, :3].argmax(1)
    assert (mean_pool == train.labels).float().mean() < 0.8  # the mean alone does not give it away
