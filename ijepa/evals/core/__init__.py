"""Pieces every eval shares: encoder loading, frozen features, heads, the head-fit loop."""
