"""Evaluation protocols: one module per harness over a shared core (`ijepa.evals.core`)."""
