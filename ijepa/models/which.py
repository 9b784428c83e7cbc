"""Which encoder of a checkpoint: the word a user gives -> the checkpoint's key.

Torch-free, so a command line checks `--which` before torch is imported; the loader
(`ijepa.models.load.load_encoder`) is the one place the word becomes a key.
"""

from __future__ import annotations

WHICH = {"target_encoder": "target_encoder", "context": "encoder", "encoder": "encoder"}
EXPECTED = "target_encoder or context (alias: encoder, the official key)"


def resolve_which(which: str, *, option: str = "which") -> str:
    """The checkpoint key `which` names ("context", the CLI's word, is the official `encoder`);
    anything else is refused naming `option` as its user spelled it."""
    if which not in WHICH:
        raise ValueError(f"{option}={which!r}: expected {EXPECTED}")
    return WHICH[which]
