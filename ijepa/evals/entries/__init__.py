"""One module per eval: its options (a spec dataclass), the rows it prints and its registry
entry, all torch-free; the code that runs it lives in `ijepa/evals/<name>.py`."""
