"""Reading what a storageUri points at, the way the storage initializer would see it."""
from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlparse

import boto3

__all__ = ["copy_storage", "list_storage", "read_storage_file"]


def _s3(env: dict[str, str]):
    return boto3.client("s3", endpoint_url=env.get("AWS_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT_URL"),
                        aws_access_key_id=env.get("AWS_ACCESS_KEY_ID"),
                        aws_secret_access_key=env.get("AWS_SECRET_ACCESS_KEY"),
                        region_name=env.get("AWS_DEFAULT_REGION", "us-east-1"))


def list_storage(uri: str, env: dict[str, str]) -> list[str]:
    """Relative paths of every object under `uri` (s3:// or a local folder)."""
    parsed = urlparse(uri)
    if parsed.scheme == "s3":
        prefix = parsed.path.lstrip("/").rstrip("/") + "/"
        client = _s3(env)
        keys: list[str] = []
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=parsed.netloc, Prefix=prefix):
            keys += [obj["Key"][len(prefix):] for obj in page.get("Contents", [])]
        return sorted(keys)
    root = Path(parsed.path if parsed.scheme == "file" else uri)
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) if root.is_dir() else []


def read_storage_file(uri: str, name: str, env: dict[str, str]) -> str:
    parsed = urlparse(uri)
    if parsed.scheme == "s3":
        key = parsed.path.lstrip("/").rstrip("/") + "/" + name
        return _s3(env).get_object(Bucket=parsed.netloc, Key=key)["Body"].read().decode()
    root = Path(parsed.path if parsed.scheme == "file" else uri)
    return (root / name).read_text()


def copy_storage(src: str, dst: str, env: dict[str, str]) -> list[str]:
    """Copy every object under `src` to `dst` (same store); returns the copied relative paths.
    Used to publish a model under a new storageUri, which is what a new model version is to KServe."""
    files = list_storage(src, env)
    ps, pd = urlparse(src), urlparse(dst)
    if ps.scheme == "s3":
        client = _s3(env)
        for rel in files:
            client.copy_object(Bucket=pd.netloc, Key=pd.path.lstrip("/").rstrip("/") + "/" + rel,
                               CopySource={"Bucket": ps.netloc, "Key": ps.path.lstrip("/").rstrip("/") + "/" + rel})
        return files
    import shutil

    shutil.copytree(Path(ps.path if ps.scheme == "file" else src), Path(pd.path if pd.scheme == "file" else dst),
                    dirs_exist_ok=True)
    return files
