#!/usr/bin/env python3
"""Reference preprocessing: transformers' ViT image processor, PIL backend.

Usage: hf_preprocess.py <image> <preprocessor_config.json> <out.f32>

Loads <image> the way transformers' image-classification pipeline does
(`load_image`: PIL decode, EXIF transpose, convert("RGB")), runs
`ViTImageProcessorPil` configured from <preprocessor_config.json>, and writes
pixel_values as raw little-endian float32 in [3, H, W] order. Prints the
shape and the processor class to stderr.

The PIL backend is what transformers uses when torchvision is absent; it is
chosen explicitly here so the reference does not change if torchvision
appears in the environment.
"""

import json
import sys

import numpy as np
from transformers.image_utils import load_image
from transformers.models.vit.image_processing_pil_vit import ViTImageProcessorPil


def main(argv: list[str]) -> int:
    if len(argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    image_path, config_path, out_path = argv[1:]

    with open(config_path, encoding="utf-8") as f:
        config = json.load(f)
    # What `from_pretrained` does with the file, minus the backend choice.
    processor = ViTImageProcessorPil.from_dict(config)

    image = load_image(image_path)
    pixel_values = processor(images=image, return_tensors="np")["pixel_values"]
    if pixel_values.shape[0] != 1 or pixel_values.ndim != 4:
        print(f"unexpected pixel_values shape {pixel_values.shape}", file=sys.stderr)
        return 1

    chw = np.ascontiguousarray(pixel_values[0], dtype="<f4")
    chw.tofile(out_path)
    print(f"{type(processor).__name__} {tuple(chw.shape)} {chw.dtype}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
