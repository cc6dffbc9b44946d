#!/usr/bin/env python3
"""Writes the seed corpora of the targets over vitrine-wire and the KServe and
model-folder parsers (fuzz/corpus/<target>/): small valid examples of what
each parser reads in service. gRPC bodies are encoded by the official
protobuf runtime from wire/proto (what a TF Serving client sends); the
vitrine-wire unit test `seeds_are_valid` decodes them with prost.

    .venv/bin/python fuzz/make_corpus.py [path to /work/shared]

Needs grpcio-tools (tests/requirements.txt). Model configs come from the
shared model zoo when it is there, with id2label and label2id cut to five
classes so the corpus stays a few KB.
"""

import base64
import json
import pathlib
import struct
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
CORPUS = ROOT / "fuzz" / "corpus"
sys.path.insert(0, str(ROOT / "tests" / "clients"))
import grpc_client  # noqa: E402  (generates the stubs from wire/proto)

grpc_client.generate_stubs()
grpc_client.import_stubs()
from grpc_client import (  # noqa: E402
    classification_pb2, example_pb2, feature_pb2, predict_pb2, tensor_pb2,
    tensor_shape_pb2, types_pb2)

JPEG = (CORPUS / "preprocess" / "rgb.jpg").read_bytes()
PNG = (CORPUS / "preprocess" / "rgb.png").read_bytes()


def write(target, name, data):
    folder = CORPUS / target
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(data if isinstance(data, bytes) else data.encode())


def shape(*dims):
    return tensor_shape_pb2.TensorShapeProto(
        dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in dims])


def predict(inputs, **spec):
    req = predict_pb2.PredictRequest()
    req.model_spec.name = "hf-vit"
    for k, v in spec.items():
        if k == "version":
            req.model_spec.version.value = v
        else:
            setattr(req.model_spec, k, v)
    for name, tensor in inputs.items():
        req.inputs[name].CopyFrom(tensor)
    return req


def strings(*items):
    return tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING, tensor_shape=shape(len(items)),
                                  string_val=list(items))


def example(**features):
    return example_pb2.Example(features=feature_pb2.Features(feature={
        k: feature_pb2.Feature(bytes_list=feature_pb2.BytesList(value=[v]))
        for k, v in features.items()}))


# grpc_predict
pixels = struct.pack("<48f", *[i / 48 for i in range(48)])
write("grpc_predict", "predict_images.bin", predict(
    {"string_input": strings(JPEG, PNG)}, signature_name="serving_default").SerializeToString())
req = predict({"pixel_values": tensor_pb2.TensorProto(
    dtype=types_pb2.DT_FLOAT, tensor_shape=shape(1, 3, 4, 4), tensor_content=pixels)}, version=3)
write("grpc_predict", "predict_pixels_content.bin", req.SerializeToString())
req = predict({"pixel_values": tensor_pb2.TensorProto(
    dtype=types_pb2.DT_FLOAT, tensor_shape=shape(1, 3, 2, 2), float_val=[0.5] * 12)})
req.model_spec.version_label = "stable"
req.output_filter.extend(["label", "probabilities"])
write("grpc_predict", "predict_pixels_floats.bin", req.SerializeToString())
# The campaign's finding: a shape whose product overflows i64 wrapped to 1
# and "matched" one image (regression test refuses_a_shape_whose_product_overflows).
req = predict({"string_input": tensor_pb2.TensorProto(
    dtype=types_pb2.DT_STRING, tensor_shape=shape(3, -6_148_914_691_236_517_205), string_val=[JPEG])})
write("grpc_predict", "refused_predict_overflowing_shape.bin", req.SerializeToString())
creq = classification_pb2.ClassificationRequest()
creq.model_spec.name = "hf-vit"
creq.input.example_list.examples.extend([example(string_input=JPEG), example(image=PNG)])
write("grpc_predict", "classify_examples.bin", creq.SerializeToString())
creq = classification_pb2.ClassificationRequest()
creq.model_spec.name = "hf-vit"
creq.input.example_list_with_context.examples.extend([example_pb2.Example()])
creq.input.example_list_with_context.context.CopyFrom(example(string_input=JPEG))
write("grpc_predict", "classify_context.bin", creq.SerializeToString())

# warmup_tfrecord: PredictionLog { predict_log (6) { request (1) } }, framed
# as TFRecord, as the host's warm-up tests write one.
def crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def masked(data):
    crc = crc32c(data)
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


def field(number, payload):
    key, out = (number << 3) | 2, bytearray()
    for v in (key, len(payload)):
        while True:
            b, v = v & 0x7F, v >> 7
            out.append(b | (0x80 if v else 0))
            if not v:
                break
    return bytes(out) + payload


def record(data):
    length = struct.pack("<Q", len(data))
    return length + struct.pack("<I", masked(length)) + data + struct.pack("<I", masked(data))


assert crc32c(b"123456789") == 0xE3069283
logs = [field(6, field(1, predict({"string_input": strings(*imgs)}).SerializeToString()))
        for imgs in ([JPEG], [b"img-a", b"img-b"])]
write("warmup_tfrecord", "tf_serving_warmup_requests", b"".join(record(r) for r in logs))
write("warmup_tfrecord", "one_record", record(logs[1]))
write("warmup_tfrecord", "prediction_log", logs[0])  # one record's data, unframed

# text_configs
write("text_configs", "models.config", """model_config_list {
  config {
    name: "hf-vit"
    base_path: "/models/hf-vit"
    model_platform: "tensorflow"        # or "onnx"
    model_version_policy { specific { versions: 1 versions: 2 } }
    version_labels { key: "stable" value: 1 }
    version_labels { key: "canary" value: 2 }
  }
  config { name: "other" base_path: "/models/other" model_version_policy { latest { num_versions: 2 } } }
  config: { name: 'all', base_path: '/m', model_version_policy < all {} > }
}
""")
write("text_configs", "batching_parameters.txt", """max_batch_size { value: 32 }
batch_timeout_micros { value: 2000 }
max_enqueued_batches { value: 100 }
num_batch_threads { value: 2 }
allowed_batch_sizes: 8
allowed_batch_sizes: 32
""")
write("text_configs", "batching_bare.txt", "max_batch_size: 16\nbatch_timeout_micros: 0\n"
      "num_batch_threads: 1\nallowed_batch_sizes: [4, 16]\n")
write("text_configs", "monitoring.config", """prometheus_config {
  enable: true,
  path: "/monitoring/prometheus/metrics"
}
""")

# kserve_request: byte 0 = mode (0 JSON, 1 binary + u16 header length).
def v2_json(body):
    return b"\x00" + json.dumps(body).encode()


def v2_binary(header, data):
    h = json.dumps(header).encode()
    return b"\x01" + struct.pack("<H", len(h)) + h + data


b64 = base64.b64encode(JPEG).decode()
write("kserve_request", "json_bytes.bin", v2_json({"id": "1", "inputs": [
    {"name": "string_input", "datatype": "BYTES", "shape": [1], "data": [b64]}]}))
write("kserve_request", "json_pixels.bin", v2_json({
    "inputs": [{"name": "pixel_values", "datatype": "FP32", "shape": [1, 3, 2, 2],
                "data": [[[[0.1, 0.2], [0.3, 0.4]], [[0.5, 0.6], [0.7, 0.8]], [[0.9, 1, 0], [0]]]]}],
    "outputs": [{"name": "label", "parameters": {"classification": 3}}, {"name": "probabilities"}]}))
framed = b"".join(struct.pack("<I", len(i)) + i for i in (JPEG, b"img-b"))
write("kserve_request", "binary_bytes.bin", v2_binary({
    "inputs": [{"name": "string_input", "datatype": "BYTES", "shape": [2],
                "parameters": {"binary_data_size": len(framed)}}],
    "outputs": [{"name": "label", "parameters": {"binary_data": True}}]}, framed))
write("kserve_request", "binary_pixels.bin", v2_binary({
    "inputs": [{"name": "pixel_values", "datatype": "FP32", "shape": [1, 3, 4, 4],
                "parameters": {"binary_data_size": len(pixels)}}],
    "parameters": {"binary_data_output": True}}, pixels))

# model_configs: config.json, NUL, preprocessor_config.json.
shared = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "/work/shared") / "models"
for folder in sorted(shared.glob("zoo/*")) + [shared / "vit-tiny-random-torch-export"]:
    if not (folder / "config.json").is_file():
        continue
    config = json.loads((folder / "config.json").read_text())
    for key in ("id2label", "label2id"):
        if key in config:
            config[key] = dict(list(config[key].items())[:5])
    pre = (folder / "preprocessor_config.json").read_bytes()
    write("model_configs", f"{folder.name}.bin", json.dumps(config).encode() + b"\x00" + pre)
