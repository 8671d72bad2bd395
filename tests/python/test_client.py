#!/usr/bin/env python3
"""Tests the occoder gRPC API with Python stubs generated from proto/.

Starts `occoder serve` (OCCODER_BIN) on a free 127.0.0.1 port with a
temporary data directory and a client registered by `occoder clients add`,
then checks tokens, coding of the REST guide's examples and error statuses.
With `--example PATH`, runs that example client against the server instead.
Run it through tests/python/run.sh, which builds the binary and the stubs.
"""

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

import grpc

from occoder.v1 import auth_pb2, auth_pb2_grpc, occoder_pb2, occoder_pb2_grpc

BIN = os.environ["OCCODER_BIN"]
MODELS = os.environ["OCCODER_MODELS"]
GUIDE_RECORD = occoder_pb2.Record(occp_text="software developer", tasks_text="writing code and unit tests")


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def add_client(data_dir, role):
    output = subprocess.run(
        [BIN, "clients", "--data-dir", data_dir, "add", "--name", f"python {role}", "--role", role, "--json"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    client = json.loads(output)
    assert client["client_id"].startswith("occ-"), client
    assert client["role"] == role, client
    return client["client_id"], client["client_secret"]


class Server:
    """`occoder serve` in a subprocess, stopped with SIGTERM."""

    def __init__(self, data_dir):
        self.address = f"127.0.0.1:{free_port()}"
        config = os.path.join(data_dir, "server.toml")
        with open(config, "w") as file:
            # Higher rates than the defaults, so the calls below need no pauses.
            file.write("[auth]\nrequests_per_second = 100.0\nburst = 100\n")
        self.log = open(os.path.join(data_dir, "server.log"), "w")
        self.process = subprocess.Popen(
            [BIN, "serve", "--listen", self.address, "--models", MODELS, "--data-dir", data_dir, "--config", config],
            stderr=self.log,
        )
        self.channel = grpc.insecure_channel(self.address)

    def wait_until_serving(self, token):
        """Polls ListTopics until the models are loaded (not UNAVAILABLE)."""
        coder = occoder_pb2_grpc.CoderStub(self.channel)
        deadline = time.monotonic() + 120
        while True:
            assert self.process.poll() is None, "the server exited early; see server.log"
            try:
                grpc.channel_ready_future(self.channel).result(timeout=5)
                coder.DescribeTopic(occoder_pb2.DescribeTopicRequest(topic="osca"), metadata=bearer(token))
                return
            except (grpc.RpcError, grpc.FutureTimeoutError) as error:
                unavailable = isinstance(error, grpc.FutureTimeoutError) or error.code() == grpc.StatusCode.UNAVAILABLE
                assert unavailable, error
                assert time.monotonic() < deadline, "the models did not load within 120 seconds"
                time.sleep(0.2)

    def stop(self):
        self.channel.close()
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=60)
        self.log.close()
        return code


def bearer(token):
    return [("authorization", f"Bearer {token}")]


def expect_error(call, code, message_prefix):
    try:
        call()
    except grpc.RpcError as error:
        assert error.code() == code, (error.code(), error.details())
        assert error.details().startswith(message_prefix), error.details()
        return error
    raise AssertionError(f"expected {code}")


def create_token(channel, client_id, secret):
    auth = auth_pb2_grpc.AuthStub(channel)
    return auth.CreateToken(auth_pb2.CreateTokenRequest(client_id=client_id, client_secret=secret))


def test_tokens(server, client_id, secret):
    auth = auth_pb2_grpc.AuthStub(server.channel)
    from_fields = create_token(server.channel, client_id, secret)
    assert from_fields.token_type == "Bearer"
    assert 3500 <= from_fields.expires_in <= 3600, from_fields.expires_in

    basic = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    from_header = auth.CreateToken(auth_pb2.CreateTokenRequest(), metadata=[("authorization", f"Basic {basic}")])
    assert from_header.access_token

    expect_error(
        lambda: create_token(server.channel, client_id, "wrong secret"),
        grpc.StatusCode.UNAUTHENTICATED,
        "User is not authorized to access this resource with an explicit deny",
    )
    coder = occoder_pb2_grpc.CoderStub(server.channel)
    expect_error(
        lambda: coder.ListTopics(occoder_pb2.ListTopicsRequest()),
        grpc.StatusCode.UNAUTHENTICATED,
        "User is not authorized",
    )
    return from_fields.access_token


def test_topics_and_models(coder, token):
    topics = coder.ListTopics(occoder_pb2.ListTopicsRequest(), metadata=bearer(token)).topics
    assert [topic.uri_name for topic in topics] == ["osca", "anzsco"], topics

    latest = coder.GetLatestModel(occoder_pb2.GetLatestModelRequest(topic="anzsco"), metadata=bearer(token))
    assert latest.topic_version == "2022", latest
    assert list(latest.input_format) == ["occp_text", "tasks_text"], latest
    models = coder.ListModels(occoder_pb2.ListModelsRequest(topic="anzsco"), metadata=bearer(token)).models
    assert latest.model_id in [model.model_id for model in models]


def test_guide_examples(coder, token):
    # ANZSCO 2022 lists "Software Developer" under 261312 Developer
    # Programmer, so the ANZSCO model codes the example within unit group
    # 2613 Software and Applications Programmers.
    for topic, code in [("osca", "273333"), ("anzsco", "2613")]:
        request = occoder_pb2.CodeRequest(topic=topic, record=GUIDE_RECORD, number_of_suggestions=3)
        response, call = coder.Code.with_call(request, metadata=bearer(token))
        coded = response.responses[0]
        assert coded.code_status == occoder_pb2.CODE_STATUS_SUCCESSFUL, coded
        assert coded.result[0].code_category.startswith(code), (topic, coded)
        assert dict(call.initial_metadata()).get("x-request-id"), call.initial_metadata()

    batch = coder.Code(
        occoder_pb2.CodeRequest(
            topic="osca",
            records=[
                GUIDE_RECORD,
                occoder_pb2.Record(occp_text="Paramedic, respond to emergencies"),
                occoder_pb2.Record(record_id="1", occp_text="Sales assistant"),
            ],
        ),
        metadata=bearer(token),
    )
    assert len(batch.responses) == 3, batch
    assert batch.responses[0].result[0].code_category == "273333", batch.responses[0]
    assert not batch.responses[0].HasField("record_id")
    assert batch.responses[2].record_id == "1", batch.responses[2]
    for coded in batch.responses:
        if coded.code_status == occoder_pb2.CODE_STATUS_UNSUCCESSFUL:
            assert len(coded.suggestions) == 3, coded
            assert not coded.result, coded


def test_errors(coder, token):
    expect_error(
        lambda: coder.Code(occoder_pb2.CodeRequest(topic="isco", record=GUIDE_RECORD), metadata=bearer(token)),
        grpc.StatusCode.NOT_FOUND,
        "The specified topic does not exist",
    )
    expect_error(
        lambda: coder.Code(occoder_pb2.CodeRequest(topic="osca"), metadata=bearer(token)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "Batch input contained no records",
    )
    error = expect_error(
        lambda: coder.Code(
            occoder_pb2.CodeRequest(topic="osca", records=[GUIDE_RECORD, occoder_pb2.Record(occp_text="ab")]),
            metadata=bearer(token),
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "There are record(s) outside the min or max char limit:",
    )
    assert "Record with index 1 has a total text length under 3 min" in error.details(), error.details()

    per_record = coder.Code(
        occoder_pb2.CodeRequest(
            topic="osca",
            records=[GUIDE_RECORD, occoder_pb2.Record(occp_text="ab")],
            per_record_errors=True,
        ),
        metadata=bearer(token),
    )
    assert per_record.responses[0].result[0].code_category == "273333", per_record
    error_text = per_record.responses[1].error
    assert error_text.startswith("Record with index 1 has a total text length under 3 min: "), per_record
    assert error_text.endswith("give a job title or tasks of at least 3 characters"), per_record


def run_tests(server, data_dir):
    client_id, secret = add_client(data_dir, "public")
    token = test_tokens(server, client_id, secret)
    server.wait_until_serving(token)
    coder = occoder_pb2_grpc.CoderStub(server.channel)
    test_topics_and_models(coder, token)
    test_guide_examples(coder, token)
    test_errors(coder, token)


def run_example(server, data_dir, example):
    client_id, secret = add_client(data_dir, "partner")
    server.wait_until_serving(create_token(server.channel, client_id, secret).access_token)
    environment = dict(os.environ, OCCODER_CLIENT_ID=client_id, OCCODER_CLIENT_SECRET=secret)
    result = subprocess.run(
        [sys.executable, example, server.address], env=environment, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "273333 Software Engineer" in result.stdout, result.stdout
    assert "result: 2613" in result.stdout, result.stdout


def main():
    example = sys.argv[2] if len(sys.argv) > 2 and sys.argv[1] == "--example" else None
    with tempfile.TemporaryDirectory() as data_dir:
        server = Server(data_dir)
        try:
            if example:
                run_example(server, data_dir, example)
            else:
                run_tests(server, data_dir)
        except BaseException:
            server.stop()
            with open(os.path.join(data_dir, "server.log")) as log:
                sys.stderr.write(log.read())
            raise
        exit_code = server.stop()
        assert exit_code == 0, f"occoder serve exited with {exit_code} after SIGTERM"
    print("python example passed" if example else "python client tests passed")


if __name__ == "__main__":
    main()
