#!/usr/bin/env python3
"""Parity check: an ONNX model directory computes HF's ViTForImageClassification.

usage: vit_forward.py MODEL_DIR [MODEL_DIR ...]

For each directory (optimum layout: model.onnx + config.json) this
  * reads the initializers of model.onnx with a minimal protobuf reader (so the
    `onnx` package is not needed) and maps them to HF parameter names; both the
    classic names (`vit.encoder.layer.0.attention.attention.query.weight`, as in
    vitrine-modelgen output and google/vit-base-patch16-224) and the
    transformers 5 names a torch export uses (`vit.layers.0.attention.q_proj`,
    Linear weights pre-transposed into MatMul inputs) are understood;
  * runs onnxruntime on the model and an independent float64 numpy
    implementation of the HF forward pass, and compares the logits;
  * repeats with every 1-D parameter (biases, LayerNorm affines) perturbed in a
    copy of the model bytes, because HF initialisation makes them 0 and 1, which
    would hide a misplaced bias or LayerNorm scale.
Exits non-zero if any max |logit difference| exceeds the tolerance.
"""

import argparse
import json
import math
import re
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort

FLOAT = 1  # TensorProto.FLOAT


# --- protobuf wire format ----------------------------------------------------


def _varint(buf, pos):
    result = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def _fields(buf, start, end):
    """Yields (field number, wire type, value) of one message; length-delimited
    values are (start, end) offsets into buf."""
    pos = start
    while pos < end:
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = buf[pos : pos + 8], pos + 8
        elif wire == 2:
            length, pos = _varint(buf, pos)
            value, pos = (pos, pos + length), pos + length
        elif wire == 5:
            value, pos = buf[pos : pos + 4], pos + 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
        yield number, wire, value


def _string(buf, span):
    return bytes(buf[span[0] : span[1]]).decode()


def _ints(buf, wire, value):
    if wire == 0:  # unpacked repeated field: one element
        return [value]
    out, pos = [], value[0]
    while pos < value[1]:
        item, pos = _varint(buf, pos)
        out.append(item)
    return out


def read_onnx(buf):
    """Returns ({initializer name: (dims, raw_data span)}, [node dicts])."""
    graph = next(v for n, w, v in _fields(buf, 0, len(buf)) if n == 7)
    initializers, nodes = {}, []
    for number, _, span in _fields(buf, *graph):
        if number == 5:  # GraphProto.initializer
            dims, dtype, name, raw = [], None, None, None
            for n, w, v in _fields(buf, *span):
                if n == 1:
                    dims += _ints(buf, w, v)
                elif n == 2:
                    dtype = v
                elif n == 8:
                    name = _string(buf, v)
                elif n == 9:
                    raw = v
                elif n in (4, 13):
                    raise ValueError(f"{name}: only raw_data initializers are supported")
            if dtype == FLOAT:
                assert raw[1] - raw[0] == 4 * math.prod(dims), name
                initializers[name] = (dims, raw)
        elif number == 1:  # GraphProto.node
            node = {"input": [], "output": [], "name": "", "op_type": ""}
            for n, _, v in _fields(buf, *span):
                if n == 1:
                    node["input"].append(_string(buf, v))
                elif n == 2:
                    node["output"].append(_string(buf, v))
                elif n == 3:
                    node["name"] = _string(buf, v)
                elif n == 4:
                    node["op_type"] = _string(buf, v)
            nodes.append(node)
    return initializers, nodes


# --- HF parameter names --------------------------------------------------------

_V5_TO_CLASSIC = [
    (r"^vit\.layers\.(\d+)\.attention\.q_proj\.", r"vit.encoder.layer.\1.attention.attention.query."),
    (r"^vit\.layers\.(\d+)\.attention\.k_proj\.", r"vit.encoder.layer.\1.attention.attention.key."),
    (r"^vit\.layers\.(\d+)\.attention\.v_proj\.", r"vit.encoder.layer.\1.attention.attention.value."),
    (r"^vit\.layers\.(\d+)\.attention\.o_proj\.", r"vit.encoder.layer.\1.attention.output.dense."),
    (r"^vit\.layers\.(\d+)\.mlp\.fc1\.", r"vit.encoder.layer.\1.intermediate.dense."),
    (r"^vit\.layers\.(\d+)\.mlp\.fc2\.", r"vit.encoder.layer.\1.output.dense."),
    (r"^vit\.layers\.(\d+)\.", r"vit.encoder.layer.\1."),
]


def classic_name(name):
    for pattern, replacement in _V5_TO_CLASSIC:
        name, count = re.subn(pattern, replacement, name)
        if count:
            break
    return name


def expected_shapes(cfg):
    """HF ViTForImageClassification state dict (classic names) -> shape."""
    h, i = cfg["hidden_size"], cfg["intermediate_size"]
    c, p = cfg["num_channels"], cfg["patch_size"]
    n = (cfg["image_size"] // p) ** 2
    shapes = {
        "vit.embeddings.cls_token": [1, 1, h],
        "vit.embeddings.position_embeddings": [1, n + 1, h],
        "vit.embeddings.patch_embeddings.projection.weight": [h, c, p, p],
        "vit.embeddings.patch_embeddings.projection.bias": [h],
        "vit.layernorm.weight": [h],
        "vit.layernorm.bias": [h],
        "classifier.weight": [len(cfg["id2label"]), h],
        "classifier.bias": [len(cfg["id2label"])],
    }
    for layer in range(cfg["num_hidden_layers"]):
        prefix = f"vit.encoder.layer.{layer}"
        linears = {f"attention.attention.{x}": (h, h) for x in ("query", "key", "value")}
        linears.update({"attention.output.dense": (h, h), "intermediate.dense": (i, h), "output.dense": (h, i)})
        for name, (out_dim, in_dim) in linears.items():
            shapes[f"{prefix}.{name}.weight"] = [out_dim, in_dim]
            if cfg.get("qkv_bias", True) or not name.startswith("attention.attention"):
                shapes[f"{prefix}.{name}.bias"] = [out_dim]
        for norm in ("layernorm_before", "layernorm_after"):
            shapes[f"{prefix}.{norm}.weight"] = [h]
            shapes[f"{prefix}.{norm}.bias"] = [h]
    return shapes


def load_params(buf, initializers, nodes, cfg):
    def array(name):
        dims, (start, end) = initializers[name]
        return np.frombuffer(bytes(buf[start:end]), dtype="<f4").reshape(dims).astype(np.float64)

    params = {}
    for name in initializers:
        params[classic_name(name)] = array(name)
    for node in nodes:
        source = node["input"][0] if node["input"] else None
        if node["op_type"] == "Identity" and source in initializers:
            # torch shares identical initializers and re-exposes them by name.
            params[classic_name(node["output"][0])] = array(source)
        elif node["op_type"] == "MatMul" and node["input"][1] in initializers:
            # torch stores Linear weights transposed as anonymous MatMul inputs;
            # the node name carries the module path.
            module = node["name"].strip("/").rsplit("/", 1)[0].replace("/", ".")
            params[classic_name(module + ".weight")] = array(node["input"][1]).T
    shapes = expected_shapes(cfg)
    missing = sorted(set(shapes) - set(params))
    assert not missing, f"parameters not found in model.onnx: {missing}"
    for name, shape in shapes.items():
        assert list(params[name].shape) == shape, f"{name}: {params[name].shape} != {shape}"
    return {name: params[name] for name in shapes}


# --- HF ViTForImageClassification forward, float64 --------------------------------

_erf = np.frompyfunc(math.erf, 1, 1)


def _layer_norm(x, weight, bias, eps):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * weight + bias


def _linear(p, prefix, x):
    y = x @ p[prefix + ".weight"].T
    bias = p.get(prefix + ".bias")
    return y if bias is None else y + bias


def vit_forward(p, cfg, pixel_values):
    x = pixel_values.astype(np.float64)
    batch, channels, height, width = x.shape
    patch, hidden = cfg["patch_size"], cfg["hidden_size"]
    heads = cfg["num_attention_heads"]
    head_dim = hidden // heads
    eps = cfg["layer_norm_eps"]

    # ViTPatchEmbeddings: Conv2d(kernel=stride=patch) then flatten(2).transpose(1, 2).
    gh, gw = height // patch, width // patch
    patches = x.reshape(batch, channels, gh, patch, gw, patch).transpose(0, 2, 4, 1, 3, 5)
    patches = patches.reshape(batch, gh * gw, channels * patch * patch)
    kernel = p["vit.embeddings.patch_embeddings.projection.weight"].reshape(hidden, -1)
    embedded = patches @ kernel.T + p["vit.embeddings.patch_embeddings.projection.bias"]
    cls = np.broadcast_to(p["vit.embeddings.cls_token"], (batch, 1, hidden))
    h = np.concatenate([cls, embedded], axis=1) + p["vit.embeddings.position_embeddings"]
    seq = h.shape[1]

    def split(t):
        return t.reshape(batch, seq, heads, head_dim).transpose(0, 2, 1, 3)

    for layer in range(cfg["num_hidden_layers"]):
        pre = f"vit.encoder.layer.{layer}"
        y = _layer_norm(h, p[pre + ".layernorm_before.weight"], p[pre + ".layernorm_before.bias"], eps)
        q = split(_linear(p, pre + ".attention.attention.query", y))
        k = split(_linear(p, pre + ".attention.attention.key", y))
        v = split(_linear(p, pre + ".attention.attention.value", y))
        scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(head_dim)
        scores = np.exp(scores - scores.max(-1, keepdims=True))
        probs = scores / scores.sum(-1, keepdims=True)
        context = (probs @ v).transpose(0, 2, 1, 3).reshape(batch, seq, hidden)
        h = h + _linear(p, pre + ".attention.output.dense", context)

        y = _layer_norm(h, p[pre + ".layernorm_after.weight"], p[pre + ".layernorm_after.bias"], eps)
        up = _linear(p, pre + ".intermediate.dense", y)
        assert cfg["hidden_act"] == "gelu"
        up = 0.5 * up * (1.0 + _erf(up / math.sqrt(2.0)).astype(np.float64))
        h = h + _linear(p, pre + ".output.dense", up)

    h = _layer_norm(h, p["vit.layernorm.weight"], p["vit.layernorm.bias"], eps)
    return _linear(p, "classifier", h[:, 0])


# --- driver ----------------------------------------------------------------------------


def perturbed(buf, initializers, rng):
    """Copy of the model bytes with every 1-D float initializer shifted by noise."""
    out = bytearray(buf)
    for dims, (start, end) in initializers.values():
        if len(dims) == 1:
            values = np.frombuffer(bytes(buf[start:end]), dtype="<f4")
            noise = rng.normal(0.0, 0.2, size=values.shape)
            out[start:end] = (values + noise).astype("<f4").tobytes()
    return bytes(out)


def compare(label, buf, cfg, inputs, tolerance):
    initializers, nodes = read_onnx(buf)
    params = load_params(buf, initializers, nodes, cfg)
    session = ort.InferenceSession(buf, providers=["CPUExecutionProvider"])
    worst = 0.0
    for x in inputs:
        (got,) = session.run(["logits"], {"pixel_values": x})
        want = vit_forward(params, cfg, x)
        assert got.shape == want.shape == (x.shape[0], len(cfg["id2label"])), (got.shape, want.shape)
        assert got.dtype == np.float32
        worst = max(worst, float(np.abs(got - want).max()))
    scale = float(np.abs(want).max())
    ok = worst <= tolerance
    print(f"{'ok  ' if ok else 'FAIL'} {label}: max |onnxruntime - numpy| = {worst:.2e} (max |logit| {scale:.3f})")
    return ok


def check_dir(model_dir, tolerance):
    cfg = json.loads((model_dir / "config.json").read_text())
    assert cfg["model_type"] == "vit" and cfg["architectures"] == ["ViTForImageClassification"]
    buf = (model_dir / "model.onnx").read_bytes()
    rng = np.random.default_rng(2024)
    shape = (cfg["num_channels"], cfg["image_size"], cfg["image_size"])
    # Batch sizes 2, 1, 3 exercise the symbolic batch dimension; values span the
    # [-1, 1] range ViTImageProcessor normalises pixels into.
    inputs = [rng.uniform(-1.0, 1.0, size=(b, *shape)).astype(np.float32) for b in (2, 1, 3)]
    ok = compare(f"{model_dir} as written", buf, cfg, inputs, tolerance)
    initializers, _ = read_onnx(buf)
    ok &= compare(f"{model_dir} with perturbed biases/LayerNorm", perturbed(buf, initializers, rng), cfg, inputs, tolerance)
    return ok


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dirs", nargs="+", type=Path)
    parser.add_argument("--tolerance", type=float, default=1e-4)
    args = parser.parse_args()
    ok = True
    for model_dir in args.model_dirs:
        ok &= check_dir(model_dir, args.tolerance)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
