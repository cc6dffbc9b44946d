"""The official tritonclient[http] package against Vitrine's KServe v2 API.

Prints one JSON object with what the server answered; the Rust test asserts.

    triton_client.py --url HOST:PORT --image FILE --pixels FILE
"""

import argparse
import base64
import json
import pathlib

import numpy as np
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException


def answer(result, names):
    out = {}
    for name in names:
        array = result.as_numpy(name)
        if array is None:
            continue
        if array.dtype == np.object_:
            out[name] = {"shape": list(array.shape),
                         "values": [v.decode() if isinstance(v, bytes) else v
                                    for v in array.flatten().tolist()]}
        else:
            out[name] = {"shape": list(array.shape), "values": array.flatten().tolist()}
    return out


def failure(call):
    try:
        call()
        return {"status": "200", "message": ""}
    except InferenceServerException as e:
        return {"status": str(e.status()), "message": e.message()}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--image", required=True)
    parser.add_argument("--pixels", required=True)
    args = parser.parse_args()
    image = pathlib.Path(args.image).read_bytes()
    client = httpclient.InferenceServerClient(url=args.url, network_timeout=300.0)
    result = {
        "live": client.is_server_live(),
        "ready": client.is_server_ready(),
        "model_ready": client.is_model_ready("hf-vit"),
        "version_ready": client.is_model_ready("hf-vit", "1"),
        "unknown_model_ready": client.is_model_ready("resnet"),
        "server_metadata": client.get_server_metadata(),
        "model_metadata": client.get_model_metadata("hf-vit"),
    }

    # Encoded images, raw, with the binary tensor data extension.
    images = httpclient.InferInput("string_input", [2], "BYTES")
    images.set_data_from_numpy(np.array([image, image], dtype=np.object_), binary_data=True)
    outputs = [httpclient.InferRequestedOutput(name, binary_data=True)
               for name in ["label", "confidence", "probabilities"]]
    reply = client.infer("hf-vit", [images], outputs=outputs, request_id="42")
    result["binary"] = answer(reply, ["label", "confidence", "probabilities"])
    result["binary_response"] = {k: v for k, v in reply.get_response().items() if k != "outputs"}

    # The same in plain JSON: BYTES elements are base64 strings.
    images = httpclient.InferInput("string_input", [1], "BYTES")
    images.set_data_from_numpy(
        np.array([base64.b64encode(image).decode()], dtype=np.object_), binary_data=False)
    reply = client.infer("hf-vit", [images], model_version="1", outputs=[
        httpclient.InferRequestedOutput("label", binary_data=False),
        httpclient.InferRequestedOutput("confidence", binary_data=False)])
    result["json"] = answer(reply, ["label", "confidence"])

    # Triton's classification extension: top 3 as "score:index:label".
    images = httpclient.InferInput("string_input", [1], "BYTES")
    images.set_data_from_numpy(np.array([image], dtype=np.object_), binary_data=True)
    reply = client.infer("hf-vit", [images], outputs=[
        httpclient.InferRequestedOutput("probabilities", binary_data=True, class_count=3)])
    result["classification"] = answer(reply, ["probabilities"])

    # Pixels the client preprocessed itself, FP32 [1,3,H,W], binary and JSON.
    pixels = np.fromfile(args.pixels, dtype="<f4")
    side = int(round((pixels.size / 3) ** 0.5))
    pixels = pixels.reshape(1, 3, side, side)
    for binary in [True, False]:
        tensor = httpclient.InferInput("pixel_values", list(pixels.shape), "FP32")
        tensor.set_data_from_numpy(pixels, binary_data=binary)
        reply = client.infer("hf-vit", [tensor], outputs=[
            httpclient.InferRequestedOutput("label", binary_data=binary),
            httpclient.InferRequestedOutput("confidence", binary_data=binary)])
        result["pixels_binary" if binary else "pixels_json"] = answer(reply, ["label", "confidence"])

    not_an_image = httpclient.InferInput("string_input", [1], "BYTES")
    not_an_image.set_data_from_numpy(np.array([b"hello"], dtype=np.object_), binary_data=True)
    wrong_shape = httpclient.InferInput("pixel_values", [1, 3, 8, 8], "FP32")
    wrong_shape.set_data_from_numpy(np.zeros((1, 3, 8, 8), dtype=np.float32), binary_data=True)
    result["errors"] = {
        "not an image": failure(lambda: client.infer("hf-vit", [not_an_image])),
        "wrong pixel shape": failure(lambda: client.infer("hf-vit", [wrong_shape])),
        "unknown model": failure(lambda: client.infer("resnet", [not_an_image])),
        "unknown version": failure(lambda: client.infer("hf-vit", [not_an_image], model_version="7")),
        "unknown output": failure(lambda: client.infer(
            "hf-vit", [not_an_image], outputs=[httpclient.InferRequestedOutput("logits")])),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
