"""TF Serving's official Python stubs (the tensorflow-serving-api package)
against Vitrine's gRPC API.

tensorflow-serving-api depends on all of TensorFlow only for TensorFlow's own
message types (TensorProto, Example, SignatureDef, ...). It is installed
without its dependencies, and those few TensorFlow protos come from
wire/proto instead; every tensorflow_serving module, the service stubs and
the PredictRequest, ModelSpec, ... messages, is the official package's.

    official_client.py --addr HOST:PORT --image FILE
"""

import argparse
import json
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import grpc_client  # noqa: E402  (generates and imports nothing by itself)

grpc_client.generate_stubs(under=("tensorflow", "xla"))
grpc_client.import_stubs()
import tensorflow_serving  # noqa: E402

official = pathlib.Path(tensorflow_serving.__file__).resolve()
if "site-packages" not in official.parts:
    sys.exit(f"tensorflow_serving comes from {official}, not the installed package")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--addr", required=True)
    parser.add_argument("--image", required=True)
    args = parser.parse_args()
    import grpc
    from tensorflow_serving.apis import prediction_service_pb2_grpc, regression_pb2

    args.pixels = None
    args.too_large = 0
    with grpc.insecure_channel(args.addr) as channel:
        grpc.channel_ready_future(channel).result(timeout=60)
        result = grpc_client.basic(channel, args)
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        result["regress"] = grpc_client.code_of(lambda: stub.Regress(
            regression_pb2.RegressionRequest(model_spec={"name": "hf-vit"}), timeout=30))
    result["official_package"] = str(official.parent)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
