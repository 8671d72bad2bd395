#!/usr/bin/env python3
"""Code occupations with an occoder server over gRPC.

Generate the stubs from the protos first (pip install grpcio grpcio-tools protobuf):

    mkdir -p gen
    python -m grpc_tools.protoc -I proto --python_out=gen --grpc_python_out=gen \\
        proto/occoder/v1/occoder.proto proto/occoder/v1/auth.proto proto/occoder/v1/bulk.proto

then run, with the credentials printed by `occoder clients add`:

    PYTHONPATH=gen OCCODER_CLIENT_ID=occ-... OCCODER_CLIENT_SECRET=... \\
        python examples/python_client.py 127.0.0.1:50051
"""

import os
import sys
import time

import grpc

from occoder.v1 import auth_pb2, auth_pb2_grpc, occoder_pb2, occoder_pb2_grpc


def print_response(response):
    status = occoder_pb2.CodeStatus.Name(response.code_status)
    codes = response.result if response.result else response.suggestions
    label = "result" if response.result else "suggestions"
    record_id = response.record_id if response.HasField("record_id") else "-"
    print(f"{record_id}  {response.input.occp_text!r}: {status}")
    for code in codes:
        print(f"    {label}: {code.code_category} {code.code_label} ({code.code_confidence:.2f})")
    if response.HasField("error"):
        print(f"    error: {response.error}")


def main():
    address = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:50051"
    channel = grpc.insecure_channel(address)

    # 1. Get an access token. It lasts an hour: reuse it for every call,
    # because a client that requests more than 10 tokens an hour (the
    # default) is refused new ones for 15 minutes.
    auth = auth_pb2_grpc.AuthStub(channel)
    try:
        token = auth.CreateToken(
            auth_pb2.CreateTokenRequest(
                client_id=os.environ["OCCODER_CLIENT_ID"],
                client_secret=os.environ["OCCODER_CLIENT_SECRET"],
            )
        ).access_token
    except grpc.RpcError as error:
        # The message gives the cause and the fix, for example when to retry.
        print(f"token request failed: {error.code().name}: {error.details()}", file=sys.stderr)
        return 1
    metadata = [("authorization", f"Bearer {token}")]
    coder = occoder_pb2_grpc.CoderStub(channel)

    # 2. Code one record against the latest OSCA model.
    single = coder.Code(
        occoder_pb2.CodeRequest(
            topic="osca",
            record=occoder_pb2.Record(occp_text="software developer", tasks_text="writing code and unit tests"),
            number_of_suggestions=3,
        ),
        metadata=metadata,
    )
    print_response(single.responses[0])

    # Each client may make 1 request per second by default.
    time.sleep(1)

    # 3. Code a small batch (up to 300 records) against ANZSCO.
    try:
        batch = coder.Code(
            occoder_pb2.CodeRequest(
                topic="anzsco",
                records=[
                    occoder_pb2.Record(occp_text="software developer", tasks_text="writing code and unit tests"),
                    occoder_pb2.Record(occp_text="Paramedic, respond to emergencies"),
                    occoder_pb2.Record(record_id="1", occp_text="Sales assistant"),
                ],
            ),
            metadata=metadata,
        )
    except grpc.RpcError as error:
        # Error messages follow the REST API, for example "Invalid request body".
        print(f"coding failed: {error.code().name}: {error.details()}", file=sys.stderr)
        return 1
    for response in batch.responses:
        print_response(response)
    return 0


if __name__ == "__main__":
    sys.exit(main())
