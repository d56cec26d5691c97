"""moto with IAM permissions enforced, in a process of its own, for access-denied tests.

moto checks signatures and IAM policies once ``INITIAL_NO_AUTH_ACTION_COUNT`` requests
have been served (before that, every request is allowed, which is how the users are made).
That setting is process-global: moto reads the variable once, at import, into
``moto.settings``, and counts the requests served in a class attribute
(``moto.core.authorization.ActionAuthenticatorMixin.request_count``) shared by every
server in the process. Turning it on in a test process would turn it on for every other
server there (the session's :class:`~gens_fs.testing.s3.MotoServer` included), so
:class:`IamMotoServer` runs a :class:`~gens_fs.testing.s3.MotoServer` in a child process
with the variable set, makes the buckets and the users in its free requests, and stops
the child (by its own process id) when done.

Run as ``python -m gens_fs.testing.s3_iam``: serve moto on 127.0.0.1, print the endpoint
on the first line of stdout, and stop when stdin closes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any, Final

from gens_fs.testing.s3 import REGION, MotoServer

# The credentials that make the users, in the requests served before IAM is enforced; any
# request signed with them afterwards is refused (no such access key).
SETUP_KEY: Final = "testing"
_STOP_TIMEOUT_S: Final = 10.0


class IamMotoServer:
    """A moto server in a child process that enforces IAM, with ``buckets`` and ``users``
    made before it does. ``users`` maps a name to the S3 actions its policy allows on
    every resource (``["s3:ListBucket", "s3:GetObject"]``), or to ``None`` for a user with
    no policy at all; :attr:`credentials` gives each one's key and secret."""

    def __init__(self, buckets: Sequence[str], users: Mapping[str, Sequence[str] | None]) -> None:
        self.buckets = list(buckets)
        self.users = dict(users)
        self.credentials: dict[str, tuple[str, str]] = {}
        self._process: subprocess.Popen[str] | None = None
        self._endpoint: str | None = None

    @property
    def free_requests(self) -> int:
        """The requests served before IAM is enforced: one per bucket, and per user its
        creation, its policy (if any) and its access key."""
        policies = sum(1 for actions in self.users.values() if actions is not None)
        return len(self.buckets) + 2 * len(self.users) + policies

    @property
    def endpoint_url(self) -> str:
        if self._endpoint is None:
            raise RuntimeError("IamMotoServer is not started")
        return self._endpoint

    def start(self) -> IamMotoServer:
        env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": str(self.free_requests)}
        self._process = subprocess.Popen(
            [sys.executable, "-m", "gens_fs.testing.s3_iam"],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._process.stdout is not None
        line = self._process.stdout.readline().strip()
        if not line.startswith("http://"):
            self.stop()
            raise RuntimeError(f"the moto process did not start: {line!r}")
        self._endpoint = line
        self._set_up()
        return self

    def _set_up(self) -> None:
        s3, iam = _client("s3", self.endpoint_url), _client("iam", self.endpoint_url)
        for bucket in self.buckets:
            s3.create_bucket(Bucket=bucket)
        for name, actions in self.users.items():
            iam.create_user(UserName=name)
            if actions is not None:
                policy = {
                    "Version": "2012-10-17",
                    "Statement": [{"Effect": "Allow", "Action": list(actions), "Resource": "*"}],
                }
                iam.put_user_policy(
                    UserName=name, PolicyName=f"{name}-policy", PolicyDocument=json.dumps(policy)
                )
            key = iam.create_access_key(UserName=name)["AccessKey"]
            self.credentials[name] = (key["AccessKeyId"], key["SecretAccessKey"])

    def stop(self) -> None:
        """Close the child's stdin (it stops serving and exits); kill it if it does not."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.stdin is not None:
            process.stdin.close()
        try:
            process.wait(_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()

    def __enter__(self) -> IamMotoServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def storage_options(self, user: str) -> dict[str, Any]:
        """s3fs storage options for ``user`` on this server (see
        :func:`~gens_fs.testing.s3.s3_storage_options`)."""
        from gens_fs.testing.s3 import s3_storage_options

        key, secret = self.credentials[user]
        return s3_storage_options(self.endpoint_url, key=key, secret=secret)


def _client(service: str, endpoint_url: str) -> Any:
    import boto3
    from botocore.config import Config

    config = Config(s3={"addressing_style": "path"}, proxies={}, retries={"total_max_attempts": 1})
    return boto3.session.Session().client(
        service,
        endpoint_url=endpoint_url,
        region_name=REGION,
        aws_access_key_id=SETUP_KEY,
        aws_secret_access_key=SETUP_KEY,
        aws_session_token=None,
        config=config,
    )


def main() -> None:
    """Serve moto until stdin closes; the endpoint is the first line on stdout."""
    with MotoServer() as server:
        print(server.endpoint_url, flush=True)
        sys.stdin.read()


if __name__ == "__main__":
    main()
