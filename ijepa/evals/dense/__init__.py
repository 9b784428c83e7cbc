"""Dense-transfer core: backbone adapter, pyramids, heads and the one dense training loop."""
