"""Reference answers for Vitrine's parity tests.

For each image: HF's ViTImageProcessor (PIL backend) pixel tensor, then
onnxruntime logits on that tensor. For each extra raw f32 tensor: onnxruntime
logits on exactly that tensor. Writes one JSON file.

usage: reference.py --model DIR [--images IMG ...] [--pixels F32 ...] --out OUT.json
"""

import argparse
import json
import os
import sys

import numpy as np
import onnxruntime as ort
from PIL import Image
from transformers import ViTImageProcessor


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True)
    p.add_argument("--images", nargs="*", default=[])
    p.add_argument("--pixels", nargs="*", default=[])
    p.add_argument("--pixels-dir", help="where to write HF's pixel tensors as raw f32")
    p.add_argument("--out", required=True)
    args = p.parse_args()

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    session = ort.InferenceSession(
        os.path.join(args.model, "model.onnx"), opts, providers=["CPUExecutionProvider"]
    )
    input_name = session.get_inputs()[0].name
    processor = ViTImageProcessor.from_pretrained(args.model)
    size = processor.size
    shape = (1, 3, size["height"], size["width"])

    def logits(pixels: np.ndarray) -> list:
        return session.run(None, {input_name: pixels.astype(np.float32)})[0][0].tolist()

    out = {"images": {}, "pixels": {}}
    for path in args.images:
        image = Image.open(path)
        pixels = processor(images=image, return_tensors="np")["pixel_values"]
        entry = {"logits": logits(pixels)}
        if args.pixels_dir:
            name = os.path.join(args.pixels_dir, os.path.basename(path) + ".f32")
            pixels.astype("<f4").tofile(name)
            entry["pixels_file"] = name
        out["images"][path] = entry
    for path in args.pixels:
        pixels = np.fromfile(path, dtype="<f4").reshape(shape)
        out["pixels"][path] = {"logits": logits(pixels)}
    with open(args.out, "w") as f:
        json.dump(out, f)


if __name__ == "__main__":
    sys.exit(main())
