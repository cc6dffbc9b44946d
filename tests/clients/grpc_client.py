"""A TF Serving gRPC client, as a user would write one, for the e2e tests.

Stubs are generated at run time with grpcio-tools from the server's own
.proto files (wire/proto), into a temporary folder; gRPC health uses the
official grpcio-health-checking stubs. Each scenario prints one JSON object
with what the server answered; the Rust test asserts on it.

    grpc_client.py SCENARIO --addr HOST:PORT [--image FILE] [--pixels FILE]
"""

import argparse
import concurrent.futures
import json
import pathlib
import sys
import tempfile

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

ROOT = pathlib.Path(__file__).resolve().parents[2]
PROTO_ROOT = ROOT / "wire" / "proto"


def generate_stubs(under=("",)):
    """Compiles the .proto files in wire/proto's folders `under` into a temp dir at
    the front of sys.path, as regular packages: they shadow any installed
    package of the same name (such as tensorflow-serving-api's)."""
    from grpc_tools import protoc
    import importlib.resources

    out = pathlib.Path(tempfile.mkdtemp(prefix="vitrine-stubs-"))
    well_known = str(importlib.resources.files("grpc_tools") / "_proto")
    protos = sorted(str(p.relative_to(PROTO_ROOT))
                    for folder in under for p in (PROTO_ROOT / folder).rglob("*.proto"))
    code = protoc.main(
        ["protoc", f"-I{PROTO_ROOT}", f"-I{well_known}", f"--python_out={out}",
         f"--grpc_python_out={out}", *protos]
    )
    if code != 0:
        sys.exit(f"grpcio-tools could not compile {PROTO_ROOT}")
    for folder in [p for p in out.rglob("*") if p.is_dir()]:
        (folder / "__init__.py").touch()
    sys.path.insert(0, str(out))


def import_stubs():
    """Imports the message and service modules: ours after generate_stubs(),
    or tensorflow-serving-api's when only TensorFlow's protos were generated."""
    global tensor_pb2, tensor_shape_pb2, types_pb2, example_pb2, feature_pb2
    global classification_pb2, get_model_metadata_pb2, get_model_status_pb2, input_pb2
    global model_management_pb2, model_service_pb2_grpc, predict_pb2
    global prediction_service_pb2_grpc
    from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
    from tensorflow.core.example import example_pb2, feature_pb2
    from tensorflow_serving.apis import (
        classification_pb2,
        get_model_metadata_pb2,
        get_model_status_pb2,
        input_pb2,
        model_management_pb2,
        model_service_pb2_grpc,
        predict_pb2,
        prediction_service_pb2_grpc,
    )


def string_tensor(items):
    return tensor_pb2.TensorProto(
        dtype=types_pb2.DT_STRING,
        tensor_shape=tensor_shape_pb2.TensorShapeProto(
            dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=len(items))]),
        string_val=items,
    )


def predict_request(images, model="hf-vit", version=None, label=None, signature="serving_default",
                    input_name="string_input", outputs=()):
    req = predict_pb2.PredictRequest()
    req.model_spec.name = model
    req.model_spec.signature_name = signature
    if version is not None:
        req.model_spec.version.value = version
    if label is not None:
        req.model_spec.version_label = label
    req.inputs[input_name].CopyFrom(string_tensor(images))
    req.output_filter.extend(outputs)
    return req


def outputs_of(reply):
    out = {}
    for name, t in reply.outputs.items():
        out[name] = {
            "dtype": types_pb2.DataType.Name(t.dtype),
            "shape": [d.size for d in t.tensor_shape.dim],
            "values": [v.decode() for v in t.string_val] if t.dtype == types_pb2.DT_STRING
            else list(t.float_val),
        }
    return out


def code_of(call):
    """Runs call(); returns [status name, details] (["OK", ""] on success)."""
    try:
        call()
        return ["OK", ""]
    except grpc.RpcError as e:
        return [e.code().name, e.details()]


def health_of(channel):
    """grpc.health.v1 status of the server and of the PredictionService."""
    health = health_pb2_grpc.HealthStub(channel)
    return {
        service: health_pb2.HealthCheckResponse.ServingStatus.Name(
            health.Check(health_pb2.HealthCheckRequest(service=service), timeout=30).status)
        for service in ["", "tensorflow.serving.PredictionService"]
    }


def health(channel, args):
    """Only grpc.health.v1, as a Kubernetes gRPC probe asks."""
    return {"health": health_of(channel)}


def basic(channel, args):
    predictions = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    models = model_service_pb2_grpc.ModelServiceStub(channel)
    image = pathlib.Path(args.image).read_bytes()
    result = {}

    result["health"] = health_of(channel)

    reply = predictions.Predict(predict_request([image]), timeout=300)
    result["predict"] = {
        "outputs": outputs_of(reply),
        "model_spec": {"name": reply.model_spec.name,
                       "version": reply.model_spec.version.value,
                       "signature_name": reply.model_spec.signature_name},
    }
    reply = predictions.Predict(
        predict_request([image, image], version=1, outputs=["label", "probabilities"]), timeout=300)
    result["predict_batch"] = outputs_of(reply)

    if args.pixels:
        pixels = pathlib.Path(args.pixels).read_bytes()
        side = int((len(pixels) // 4 // 3) ** 0.5)
        req = predict_pb2.PredictRequest()
        req.model_spec.name = "hf-vit"
        req.inputs["pixel_values"].CopyFrom(tensor_pb2.TensorProto(
            dtype=types_pb2.DT_FLOAT,
            tensor_shape=tensor_shape_pb2.TensorShapeProto(dim=[
                tensor_shape_pb2.TensorShapeProto.Dim(size=s) for s in [1, 3, side, side]]),
            tensor_content=pixels,
        ))
        result["predict_pixels"] = outputs_of(predictions.Predict(req, timeout=300))

    status = models.GetModelStatus(
        get_model_status_pb2.GetModelStatusRequest(model_spec={"name": "hf-vit"}), timeout=30)
    result["status"] = [
        {"version": s.version,
         "state": get_model_status_pb2.ModelVersionStatus.State.Name(s.state),
         "error_code": s.status.error_code,
         "error_message": s.status.error_message}
        for s in status.model_version_status
    ]

    meta = predictions.GetModelMetadata(get_model_metadata_pb2.GetModelMetadataRequest(
        model_spec={"name": "hf-vit"}, metadata_field=["signature_def"]), timeout=60)
    signatures = get_model_metadata_pb2.SignatureDefMap()
    packed = meta.metadata["signature_def"]
    result["metadata_type_url"] = packed.type_url
    assert packed.Unpack(signatures), "the Any holds a SignatureDefMap"
    sig = signatures.signature_def["serving_default"]
    result["metadata"] = {
        "version": meta.model_spec.version.value,
        "method_name": sig.method_name,
        "inputs": {k: types_pb2.DataType.Name(v.dtype) for k, v in sig.inputs.items()},
        "outputs": {k: types_pb2.DataType.Name(v.dtype) for k, v in sig.outputs.items()},
    }

    example = example_pb2.Example(features=feature_pb2.Features(feature={
        "string_input": feature_pb2.Feature(bytes_list=feature_pb2.BytesList(value=[image])),
    }))
    classify = predictions.Classify(classification_pb2.ClassificationRequest(
        model_spec={"name": "hf-vit"},
        input=input_pb2.Input(example_list=input_pb2.ExampleList(examples=[example, example]))),
        timeout=300)
    result["classify"] = [
        [[c.label, c.score] for c in cls.classes] for cls in classify.result.classifications
    ]

    bad_metadata = get_model_metadata_pb2.GetModelMetadataRequest(model_spec={"name": "hf-vit"})
    float_input = predict_request([image])
    float_input.inputs["string_input"].dtype = types_pb2.DT_FLOAT
    result["errors"] = {
        "not an image": code_of(lambda: predictions.Predict(
            predict_request([b"hello, world"]), timeout=60)),
        "truncated image": code_of(lambda: predictions.Predict(
            predict_request([image[: len(image) // 3]]), timeout=60)),
        "wrong input name": code_of(lambda: predictions.Predict(
            predict_request([image], input_name="images"), timeout=60)),
        "wrong dtype": code_of(lambda: predictions.Predict(float_input, timeout=60)),
        "wrong signature": code_of(lambda: predictions.Predict(
            predict_request([image], signature="classify_images"), timeout=60)),
        "unknown output": code_of(lambda: predictions.Predict(
            predict_request([image], outputs=["logits"]), timeout=60)),
        "unknown model": code_of(lambda: predictions.Predict(
            predict_request([image], model="resnet"), timeout=60)),
        "unknown version": code_of(lambda: predictions.Predict(
            predict_request([image], version=7), timeout=60)),
        "unknown label": code_of(lambda: predictions.Predict(
            predict_request([image], label="stable"), timeout=60)),
        "status of unknown model": code_of(lambda: models.GetModelStatus(
            get_model_status_pb2.GetModelStatusRequest(model_spec={"name": "resnet"}), timeout=30)),
        "metadata without field": code_of(lambda: predictions.GetModelMetadata(
            bad_metadata, timeout=30)),
        "too large": code_of(lambda: predictions.Predict(
            predict_request([b"\0" * (args.too_large or 1)]), timeout=60)),
        "reload config": code_of(lambda: models.HandleReloadConfigRequest(
            model_management_pb2.ReloadConfigRequest(), timeout=30)),
    }
    # The server still answers after all that.
    reply = predictions.Predict(predict_request([image]), timeout=300)
    result["predict_after"] = outputs_of(reply)
    return result


def overload(channel, args):
    """Many concurrent batches at a one-instance, no-queue server."""
    predictions = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    image = pathlib.Path(args.image).read_bytes()
    request = predict_request([image] * 16)
    with concurrent.futures.ThreadPoolExecutor(max_workers=args.concurrency) as pool:
        codes = list(pool.map(
            lambda _: code_of(lambda: predictions.Predict(request, timeout=300)),
            range(args.concurrency)))
    return {"codes": codes}


def steady(channel, args):
    """Predicts back to back until --stop-file exists: every call's status
    and the version that answered it, in order."""
    predictions = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    request = predict_request([pathlib.Path(args.image).read_bytes()], model=args.model)
    calls = []
    while not pathlib.Path(args.stop_file).exists():
        try:
            reply = predictions.Predict(request, timeout=300)
            calls.append(["OK", reply.model_spec.version.value])
        except grpc.RpcError as e:
            calls.append([e.code().name, e.details()])
    return {"calls": calls}


def unavailable(channel, args):
    """A server whose only version failed to load."""
    predictions = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    models = model_service_pb2_grpc.ModelServiceStub(channel)
    health = health_pb2_grpc.HealthStub(channel)
    status = models.GetModelStatus(
        get_model_status_pb2.GetModelStatusRequest(model_spec={"name": "hf-vit"}), timeout=30)
    return {
        "predict": code_of(lambda: predictions.Predict(predict_request([b"x"]), timeout=60)),
        "health": health_pb2.HealthCheckResponse.ServingStatus.Name(
            health.Check(health_pb2.HealthCheckRequest(service=""), timeout=30).status),
        "status": [
            {"version": s.version,
             "state": get_model_status_pb2.ModelVersionStatus.State.Name(s.state),
             "error_message": s.status.error_message}
            for s in status.model_version_status
        ],
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("scenario", choices=["basic", "health", "overload", "steady", "unavailable"])
    parser.add_argument("--addr", required=True)
    parser.add_argument("--image")
    parser.add_argument("--pixels")
    parser.add_argument("--too-large", type=int, default=0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--model", default="hf-vit")
    parser.add_argument("--stop-file")
    args = parser.parse_args()
    generate_stubs()
    import_stubs()
    # The client's own limits well above the server's, so the server decides.
    options = [("grpc.max_send_message_length", 256 << 20),
               ("grpc.max_receive_message_length", 256 << 20)]
    with grpc.insecure_channel(args.addr, options=options) as channel:
        grpc.channel_ready_future(channel).result(timeout=60)
        result = globals()[args.scenario](channel, args)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
