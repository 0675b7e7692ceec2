#!/usr/bin/env python3
"""A real S3-compatible server for the tests: moto on 127.0.0.1, signatures enforced.

Starts moto's server in this process on a free loopback port, with authentication on after
the first three requests (INITIAL_NO_AUTH_ACTION_COUNT=3), which create an IAM user, its
inline policy (s3:* on everything) and its access key. It then creates the bucket(s) named on
the command line with those credentials (a signed request: it proves auth works), prints one
JSON line {"endpoint", "access_key", "secret_key", "region"} and serves until its standard
input closes (the test process exited or closed the pipe), so a crashed test run never leaves
a server behind.

    s3_test_server.py BUCKET...        # used by Tests/TestSupport (S3TestServer)
    s3_test_server.py --no-auth BUCKET...
                                       # signatures not checked: for the benchmark, because
                                       # moto refuses s3fs 1.90's signed ListObjects requests
"""
import json
import logging
import os
import sys

NO_AUTH = "--no-auth" in sys.argv[1:]
BUCKETS = [a for a in sys.argv[1:] if a != "--no-auth"]
if not NO_AUTH:
    os.environ["INITIAL_NO_AUTH_ACTION_COUNT"] = "3"
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
# Requests of the setup itself; never anything from the developer's environment.
for v in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN"):
    os.environ.pop(v, None)

import boto3  # noqa: E402
from moto.moto_server.threaded_moto_server import ThreadedMotoServer  # noqa: E402


def main() -> None:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request on stderr
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    region = "us-east-1"
    iam = boto3.client("iam", endpoint_url=endpoint, region_name=region,
                       aws_access_key_id="setup", aws_secret_access_key="setup")
    iam.create_user(UserName="cce4-test")
    iam.put_user_policy(UserName="cce4-test", PolicyName="s3-all", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
    key = iam.create_access_key(UserName="cce4-test")["AccessKey"]
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name=region,
                      aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"])
    for bucket in BUCKETS:
        s3.create_bucket(Bucket=bucket)
    print(json.dumps({"endpoint": endpoint, "access_key": key["AccessKeyId"],
                      "secret_key": key["SecretAccessKey"], "region": region}), flush=True)
    try:
        while sys.stdin.buffer.read(65536):
            pass
    finally:
        server.stop()


if __name__ == "__main__":
    main()
