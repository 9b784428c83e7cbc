# mmdet 3.3 config: ViTDet Mask R-CNN (ViT-B, LSJ, 100 epochs) on our I-JEPA encoder.
# Optional backend (see scripts/install_mm.sh); the default is `ijepa eval detection`.
# From an mmdetection checkout (IJEPA_ENCODER is required: mmengine stops if it is unset):
#   IJEPA_ENCODER=runs/<run> TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 \
#       python tools/train.py /path/to/ijepa/evals/mmdet_mask-rcnn_ijepa-vitb_coco.py
# Sources: mmdetection projects/ViTDet/configs/vitdet_mask-rcnn_vit-b-mae_lsj-100e.py and
# Detectron2 projects/ViTDet/configs/COCO/mask_rcnn_vitdet_b_100ep.py (ViTDet, arXiv 2203.16527):
# box AP 51.6 / mask AP 45.9 with MAE ViT-B. Our backbone differs in one way: global attention in
# every block (no 14x14 windows, no relative positions), since it is the pretrained encoder as is.
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    'mmdet::common/lsj-100e_coco-instance.py',
]

custom_imports = dict(imports=['ijepa.evals.mm.plugin'], allow_failed_imports=False)

norm_cfg = dict(type='LN2d', requires_grad=True)
image_size = (1024, 1024)
batch_augments = [dict(type='BatchFixedSizePad', size=image_size, pad_mask=True)]

model = dict(
    data_preprocessor=dict(pad_size_divisor=32, batch_augments=batch_augments),
    backbone=dict(
        _delete_=True,
        type='IJepaPyramid',
        encoder='{{$IJEPA_ENCODER:}}',  # run dir or checkpoint (ours or official)
        which='target_encoder',
        pyramid='simple',       # ViTDet: last block, scales 4, 2, 1, 0.5, LayerNorm
        out_channels=256,
        top_block=True,         # + max-pool level: strides 4, 8, 16, 32, 64
        mode='finetune'),
    neck=None,
    rpn_head=dict(num_convs=2),
    roi_head=dict(
        bbox_head=dict(type='Shared4Conv1FCBBoxHead', conv_out_channels=256, norm_cfg=norm_cfg),
        mask_head=dict(norm_cfg=norm_cfg)))

# AdamW, lr 1e-4, wd 0.1, layer-wise lr decay 0.7 (ours: patch embed = layer 0, block i = i + 1).
optim_wrapper = dict(
    _delete_=True,
    type='AmpOptimWrapper',
    constructor='IJepaLayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(decay_rate=0.7),
    optimizer=dict(type='AdamW', lr=0.0001, betas=(0.9, 0.999), weight_decay=0.1))

# 100 epochs at total batch 64 (4 images x 16 GPUs); steps x0.1 at 88.9% and 96.3%.
max_iters = 184375
interval = 5000
dynamic_intervals = [(max_iters // interval * interval + 1, max_iters)]
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=250),
    dict(type='MultiStepLR', begin=0, end=max_iters, by_epoch=False, milestones=[163889, 177546], gamma=0.1),
]
train_cfg = dict(max_iters=max_iters, val_interval=interval, dynamic_intervals=dynamic_intervals)
default_hooks = dict(checkpoint=dict(by_epoch=False, save_last=True, interval=interval, max_keep_ckpts=5))
auto_scale_lr = dict(base_batch_size=64)
