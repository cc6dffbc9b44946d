#!/usr/bin/env python3
"""Reference for every image processor Vitrine reproduces, and their models.

usage: hf_processor.py JOBS.json OUT.json

JOBS.json is a list of {"model": DIR, "image": PATH, "pixels_out": PATH}
(and optionally "logits": true). For each job it loads DIR's processor the
way a user does, `AutoImageProcessor.from_pretrained(DIR, backend="pil")`
(transformers' PIL path, the one it takes without torchvision; asked for by
name so the reference cannot change if torchvision appears), loads the image
as the image-classification pipeline does (`load_image`: PIL decode, EXIF
transpose, convert("RGB")), and writes pixel_values as raw little-endian
float32 [3, H, W] to "pixels_out". With "logits", onnxruntime runs
DIR/model.onnx on exactly that tensor.

OUT.json maps each job's "pixels_out" to {"processor": class name, "shape":
[3, H, W], "logits": [...]} or, when transformers itself refuses the config,
{"error": message}. One process answers every job: importing transformers
is most of the time.
"""

import json
import os
import sys

import numpy as np
from transformers import AutoImageProcessor
from transformers.image_utils import load_image


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    with open(argv[1], encoding="utf-8") as f:
        jobs = json.load(f)

    processors: dict[str, object] = {}
    sessions: dict[str, object] = {}
    out = {}
    for job in jobs:
        model = job["model"]
        try:
            if model not in processors:
                processors[model] = AutoImageProcessor.from_pretrained(model, backend="pil")
            processor = processors[model]
            if processor.backend != "pil":
                raise RuntimeError(f"{type(processor).__name__} is not the PIL backend")
            image = load_image(job["image"])
            pixels = processor(images=image, return_tensors="np")["pixel_values"]
        except Exception as err:  # the refusal is the answer
            out[job["pixels_out"]] = {"error": f"{type(err).__name__}: {err}"}
            continue
        chw = np.ascontiguousarray(pixels[0], dtype="<f4")
        chw.tofile(job["pixels_out"])
        entry = {"processor": type(processor).__name__, "shape": list(chw.shape)}
        if job.get("logits"):
            if model not in sessions:
                import onnxruntime as ort

                opts = ort.SessionOptions()
                opts.intra_op_num_threads = 2
                sessions[model] = ort.InferenceSession(
                    os.path.join(model, "model.onnx"), opts, providers=["CPUExecutionProvider"]
                )
            session = sessions[model]
            name = session.get_inputs()[0].name
            logits = session.run(None, {name: chw[None].astype(np.float32)})[0][0]
            entry["logits"] = [float(x) for x in logits]
        out[job["pixels_out"]] = entry
    with open(argv[2], "w", encoding="utf-8") as f:
        json.dump(out, f)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
