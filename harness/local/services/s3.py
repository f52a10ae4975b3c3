"""A local S3-compatible object store (moto's server), so artifact URIs are s3://... as in production."""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from harness.ports import LOOPBACK
from harness.procs import ManagedProcess, ProcessRegistry

__all__ = ["S3Store", "start_s3"]

#: moto accepts any credentials; these are what every client of the local stack is given.
ACCESS_KEY = "seamcheck"
SECRET_KEY = "seamcheck-secret"
REGION = "us-east-1"


@dataclass
class S3Store:
    process: ManagedProcess
    endpoint: str
    bucket: str
    ready_seconds: float

    @property
    def port(self) -> int:
        return int(self.endpoint.rsplit(":", 1)[1])

    def client_env(self) -> dict[str, str]:
        """What MLflow (MLFLOW_S3_ENDPOINT_URL), boto3 and KServe's storage initializer
        (AWS_ENDPOINT_URL, S3_USE_HTTPS) read to reach this store."""
        return {
            "MLFLOW_S3_ENDPOINT_URL": self.endpoint,
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
            "S3_USE_HTTPS": "0",
            "S3_VERIFY_SSL": "0",
        }

    def client(self):
        import boto3  # here: boto3 takes 0.1 s, and only a session that starts the store needs it

        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=ACCESS_KEY,
                            aws_secret_access_key=SECRET_KEY, region_name=REGION)

    # moto's server keeps objects in memory. A real object store that goes down comes back with
    # its objects, so an outage fault saves the bucket before it stops the server and puts it
    # back after the restart (no client can reach the store in between either way).
    def save_bucket(self, dest: Path) -> int:
        client = self.client()
        count = 0
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket):
            for obj in page.get("Contents", []):
                target = dest / obj["Key"]
                target.parent.mkdir(parents=True, exist_ok=True)
                client.download_file(self.bucket, obj["Key"], str(target))
                count += 1
        return count

    def load_bucket(self, src: Path) -> int:
        client = self.client()
        count = 0
        for path in sorted(p for p in src.rglob("*") if p.is_file()):
            client.upload_file(str(path), self.bucket, str(path.relative_to(src)))
            count += 1
        return count


def start_s3(registry: ProcessRegistry, state: Path, port: int, *, bucket: str,
             deadline_s: float = 60.0) -> S3Store:
    moto = Path(sys.executable).with_name("moto_server")
    argv = [str(moto) if moto.exists() else sys.executable, *([] if moto.exists() else ["-m", "moto.server"]),
            "-H", LOOPBACK, "-p", str(port)]
    proc = registry.start(ManagedProcess("s3 (moto server)", argv, state / "logs" / "s3.log"))
    endpoint = f"http://{LOOPBACK}:{port}"
    seconds = proc.wait_http(f"{endpoint}/moto-api/", deadline_s=deadline_s)
    store = S3Store(proc, endpoint, bucket, seconds)
    store.client().create_bucket(Bucket=bucket)
    return store
