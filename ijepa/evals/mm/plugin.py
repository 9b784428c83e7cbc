"""`custom_imports = dict(imports=["ijepa.evals.mm.plugin"])`: importing this module registers
`IJepaPyramid`, `LN2d` and the layer-decay optimizer constructor in the OpenMMLab registries
that are importable. The one import-time side effect in the package, by OpenMMLab's design."""

from ijepa.evals.mm.backbone import register

REGISTERED = register()
