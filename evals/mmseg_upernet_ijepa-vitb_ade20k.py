# mmsegmentation 1.2 config: UperNet on our I-JEPA ViT-B, ADE20K, 512 x 512, 160k iterations.
# Optional backend (see scripts/install_mm.sh); the default is `ijepa eval segmentation`.
# IJEPA_ENCODER (run dir or checkpoint) is required: mmengine stops if it is unset.
#   IJEPA_ENCODER=runs/<run> TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 \
#       python tools/train.py /path/to/ijepa/evals/mmseg_upernet_ijepa-vitb_ade20k.py   (mmseg checkout)
# Sources: mmsegmentation configs/mae/mae-base_upernet_8xb2-amp-160k_ade20k-512x512.py and
# the MAE / BEiT papers (UperNet, taps at blocks 3, 5, 7, 11 -> x4, x2, x1, /2). MAE ViT-B:
# 48.1 mIoU. The I-JEPA paper reports no ADE20K number: whatever this gives is ours.
_base_ = [
    'mmseg::_base_/models/upernet_r50.py',
    'mmseg::_base_/datasets/ade20k.py',
    'mmseg::_base_/default_runtime.py',
    'mmseg::_base_/schedules/schedule_160k.py',
]

custom_imports = dict(imports=['ijepa.evals.mm.plugin'], allow_failed_imports=False)

crop_size = (512, 512)
data_preprocessor = dict(size=crop_size)
model = dict(
    data_preprocessor=data_preprocessor,
    pretrained=None,
    backbone=dict(
        _delete_=True,
        type='IJepaPyramid',
        encoder='{{$IJEPA_ENCODER:}}',
        which='target_encoder',
        pyramid='multilevel',   # BEiT/MAE neck: deconvs x4, x2, identity, max-pool /2
        taps=[3, 5, 7, 11],
        out_channels=0,         # keep the encoder width (768) on all four levels
        top_block=False,
        mode='finetune'),
    neck=None,
    decode_head=dict(in_channels=[768, 768, 768, 768], channels=768, num_classes=150),
    auxiliary_head=dict(in_channels=768, num_classes=150),
    test_cfg=dict(mode='slide', crop_size=(512, 512), stride=(341, 341)))

# AdamW lr 1e-4, wd 0.05, layer-wise lr decay 0.65 (MAE's mmseg recipe), 1500 warm-up iters, poly.
optim_wrapper = dict(
    _delete_=True,
    type='AmpOptimWrapper',
    constructor='IJepaLayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(decay_rate=0.65),
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type='PolyLR', power=1.0, begin=1500, end=160000, eta_min=0.0, by_epoch=False),
]
# 8 GPUs x 2 images = batch 16.
train_dataloader = dict(batch_size=2)
val_dataloader = dict(batch_size=1)
test_dataloader = val_dataloader
