"""`ijepa explore`: a local page that shows how I-JEPA sees an image.

Masks from the training collator, per-patch prediction quality (predictor vs target
encoder), PCA colours of patch features and nearest neighbours by pooled feature; served
live on 127.0.0.1 or exported as static HTML + PNGs.
"""

from ijepa.explore.analysis import Analysis, MaskSettings, analyse, nearest, pca_rgb, sample_masks
from ijepa.explore.export import export_static
from ijepa.explore.model import load_explore_model
from ijepa.explore.server import make_server
from ijepa.explore.session import Explorer, open_explorer

__all__ = [
    "Analysis", "Explorer", "MaskSettings", "analyse", "export_static", "load_explore_model",
    "make_server", "nearest", "open_explorer", "pca_rgb", "sample_masks",
]
