#!/usr/bin/env python3
"""Writes tests/fixtures/zoo/: small, randomly initialised HF image classifiers.

Run by hand, never in CI (it needs torch, ~6 GB):

    python3 -m venv /work/torchvenv
    /work/torchvenv/bin/pip install torch transformers onnx onnxscript
    /work/torchvenv/bin/python modelgen/zoo/export.py [--only NAME ...]

Each folder is what `optimum-cli export onnx` writes for an image classifier:
`model.onnx` (a `torch.onnx.export`, opset 14, dynamic batch, input
`pixel_values`, output `logits`), `config.json` (with the real ImageNet-1k
`id2label` from ../shared/labels, or modelgen's copy) and the
`preprocessor_config.json` that the processor's `save_pretrained` writes,
configured as the architecture's popular hub checkpoints are. Weights are
random (torch seed 0) and the models are narrowed to a few layers so each
folder stays around 1-2 MB; they prove preprocessing and serving, not
accuracy. `config.json` carries `"vitrine": {"random_weights": true}`.
"""

import argparse
import json
import os
import sys

import torch
import transformers as tf
from transformers.image_utils import (
    IMAGENET_DEFAULT_MEAN,
    IMAGENET_DEFAULT_STD,
    OPENAI_CLIP_MEAN,
    OPENAI_CLIP_STD,
)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "tests", "fixtures", "zoo")


def labels() -> dict[int, str]:
    for path in [
        os.path.join(ROOT, "..", "shared", "labels", "imagenet1k_id2label.json"),
        os.path.join(ROOT, "modelgen", "data", "imagenet1k_id2label.json"),
    ]:
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                raw = json.load(f)
            return {int(k): v for k, v in raw.items()}
    raise SystemExit("no imagenet1k_id2label.json found")


def small_vit_kwargs(**extra):
    return dict(hidden_size=96, num_hidden_layers=2, num_attention_heads=3, intermediate_size=192, **extra)


# name -> (model class, config, processor, input side)
def zoo():
    return {
        # DINOv2 classifiers (facebook/dinov2-*-imagenet1k-1-layer) ship BitImageProcessor:
        # short side 256, center crop 224, ImageNet mean/std, do_convert_rgb.
        "dinov2": (
            tf.Dinov2ForImageClassification,
            tf.Dinov2Config(**small_vit_kwargs(image_size=224, patch_size=14, mlp_ratio=2)),
            tf.BitImageProcessorPil(
                size={"shortest_edge": 256},
                crop_size={"height": 224, "width": 224},
                image_mean=IMAGENET_DEFAULT_MEAN,
                image_std=IMAGENET_DEFAULT_STD,
                resample=3,
            ),
            224,
        ),
        # google/bit-50: BitImageProcessor, short side 448 there; 256 -> 224 here.
        "bit": (
            tf.BitForImageClassification,
            tf.BitConfig(embedding_size=16, hidden_sizes=[32, 64], depths=[1, 1], layer_type="preactivation",
                         num_groups=4),
            tf.BitImageProcessorPil(
                size={"shortest_edge": 256},
                crop_size={"height": 224, "width": 224},
                image_mean=[0.5, 0.5, 0.5],
                image_std=[0.5, 0.5, 0.5],
                resample=2,
            ),
            224,
        ),
        # openai/clip-vit-*: CLIPImageProcessor with OpenAI's mean/std, short side 224, crop 224.
        "clip": (
            tf.CLIPForImageClassification,
            tf.CLIPConfig(
                vision_config=dict(**small_vit_kwargs(image_size=224, patch_size=16)),
                text_config=dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                                 vocab_size=100),
                projection_dim=32,
            ),
            tf.CLIPImageProcessorPil(
                size={"shortest_edge": 224},
                crop_size={"height": 224, "width": 224},
                image_mean=OPENAI_CLIP_MEAN,
                image_std=OPENAI_CLIP_STD,
                do_convert_rgb=True,
            ),
            224,
        ),
        # facebook/convnext-tiny-224: ConvNextImageProcessor, shortest_edge 224, crop_pct 0.875.
        "convnext": (
            tf.ConvNextForImageClassification,
            tf.ConvNextConfig(num_stages=2, hidden_sizes=[24, 48], depths=[1, 1]),
            tf.ConvNextImageProcessorPil(size={"shortest_edge": 224}, crop_pct=224 / 256, resample=3,
                                      image_mean=IMAGENET_DEFAULT_MEAN, image_std=IMAGENET_DEFAULT_STD),
            224,
        ),
        # microsoft/resnet-50 ships ConvNextImageProcessor (crop_pct 0.875, short side 224).
        "resnet": (
            tf.ResNetForImageClassification,
            tf.ResNetConfig(embedding_size=16, hidden_sizes=[24, 48], depths=[1, 1], layer_type="basic"),
            tf.ConvNextImageProcessorPil(size={"shortest_edge": 224}, crop_pct=0.875, resample=3,
                                      image_mean=IMAGENET_DEFAULT_MEAN, image_std=IMAGENET_DEFAULT_STD),
            224,
        ),
        # facebook/levit-128S: LevitImageProcessor, shortest_edge 224 (resized to 256), crop 224.
        "levit": (
            tf.LevitForImageClassificationWithTeacher,
            tf.LevitConfig(hidden_sizes=[32, 48, 64], num_attention_heads=[1, 2, 2], depths=[1, 1, 1],
                           key_dim=[8, 8, 8], mlp_ratio=[2, 2, 2], attention_ratio=[2, 2, 2]),
            tf.LevitImageProcessorPil(size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224}),
            224,
        ),
        # sail/poolformer_s12: PoolFormerImageProcessor, crop_pct 0.9, short side 224.
        "poolformer": (
            tf.PoolFormerForImageClassification,
            tf.PoolFormerConfig(num_encoder_blocks=2, depths=[1, 1], hidden_sizes=[24, 48],
                                patch_sizes=[7, 3], strides=[4, 2], padding=[2, 1]),
            tf.PoolFormerImageProcessorPil(size={"shortest_edge": 224}, crop_pct=0.9,
                                        crop_size={"height": 224, "width": 224}),
            224,
        ),
        # apple/mobilevit-small: short side 288, crop 256, bilinear, BGR, no normalisation.
        "mobilevit": (
            tf.MobileViTForImageClassification,
            tf.MobileViTConfig(image_size=256, hidden_sizes=[32, 48, 64], neck_hidden_sizes=[8, 8, 16, 16, 24, 32, 64],
                               num_attention_heads=2, mlp_ratio=2.0),
            tf.MobileViTImageProcessorPil(size={"shortest_edge": 288}, crop_size={"height": 256, "width": 256},
                                       resample=2),
            256,
        ),
        # google/efficientnet-b0 is 224x224 nearest with include_top; rescale_offset
        # (to [-1, 1], as the b7 TF ports use) is on here so its arithmetic is proven.
        "efficientnet": (
            tf.EfficientNetForImageClassification,
            tf.EfficientNetConfig(image_size=224, width_coefficient=0.25, depth_coefficient=0.2, hidden_dim=320),
            tf.EfficientNetImageProcessorPil(size={"height": 224, "width": 224}, resample=0, rescale_factor=1 / 127.5,
                                          rescale_offset=True, include_top=True,
                                          image_mean=IMAGENET_DEFAULT_MEAN,
                                          image_std=[0.47853944, 0.4732864, 0.47434163]),
            224,
        ),
        # google/mobilenet_v2_1.0_224: short side 256, crop 224.
        "mobilenet_v2": (
            tf.MobileNetV2ForImageClassification,
            tf.MobileNetV2Config(depth_multiplier=0.1, finegrained_output=False, image_size=224),
            tf.MobileNetV2ImageProcessorPil(size={"shortest_edge": 256}, crop_size={"height": 224, "width": 224}),
            224,
        ),
    }


def export(name, model_cls, config, processor, side, id2label):
    torch.manual_seed(0)
    config.id2label = id2label
    config.label2id = {v: k for k, v in id2label.items()}
    model = model_cls(config).eval()
    folder = os.path.join(OUT, name)
    os.makedirs(folder, exist_ok=True)
    model.config.save_pretrained(folder)
    processor.save_pretrained(folder)
    with open(os.path.join(folder, "config.json"), encoding="utf-8") as f:
        saved = json.load(f)
    saved["vitrine"] = {"random_weights": True, "seed": 0,
                        "note": "random weights (torch seed 0): a test fixture; predictions mean nothing"}
    with open(os.path.join(folder, "config.json"), "w", encoding="utf-8") as f:
        json.dump(saved, f, indent=2, sort_keys=True)
        f.write("\n")

    class Logits(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, pixel_values):
            return self.inner(pixel_values=pixel_values).logits

    dummy = torch.randn(1, 3, side, side)
    torch.onnx.export(
        Logits(model),
        (dummy,),
        os.path.join(folder, "model.onnx"),
        input_names=["pixel_values"],
        output_names=["logits"],
        dynamic_axes={"pixel_values": {0: "batch_size"}, "logits": {0: "batch_size"}},
        opset_version=14,
        dynamo=False,
    )
    size = os.path.getsize(os.path.join(folder, "model.onnx"))
    params = sum(p.numel() for p in model.parameters())
    print(f"{name}: {params / 1e6:.2f}M parameters, model.onnx {size / 1e6:.2f} MB", file=sys.stderr)


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--only", nargs="*")
    args = p.parse_args()
    id2label = labels()
    for name, (cls, config, processor, side) in zoo().items():
        if args.only and name not in args.only:
            continue
        export(name, cls, config, processor, side, id2label)
    return 0


if __name__ == "__main__":
    sys.exit(main())
