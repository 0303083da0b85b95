"""Deployment settings shared by subcommands: where the repo's stores are.

Store endpoints are deployment settings, not definitions: a flag wins over an environment
variable, which wins over the default the repo file names.
"""

from __future__ import annotations

import argparse
import dataclasses
import os

from ferry.cli.arguments import OFFLINE_ROOT_ENV, ONLINE_STORE_ENV
from ferry.client import ClientTls, FerryClient
from ferry.core.errors import FerryError
from ferry.core.repo import FeatureRepo
from ferry.core.repo_file import load_repo, offline_root_problem


def load(args: argparse.Namespace) -> FeatureRepo:
    """The repo file, with the offline root taken from the flag or environment if given."""
    repo = load_repo(args.repo_file)
    root = args.offline_root or os.environ.get(OFFLINE_ROOT_ENV)
    if root:
        problem = offline_root_problem(root)
        if problem:
            given = "--offline-root" if args.offline_root else f"${OFFLINE_ROOT_ENV}"
            raise FerryError(f"{given} {problem}")
        repo = dataclasses.replace(
            repo, offline_root=root if "://" in root else os.path.abspath(root)
        )
    return repo


def online_store_url(args: argparse.Namespace, repo: FeatureRepo) -> str:
    """The online store URL to use.

    Raises:
        FerryError: none is given anywhere.
    """
    url = args.online_store or os.environ.get(ONLINE_STORE_ENV) or repo.online_store
    if not url:
        raise FerryError(
            f"no online store: pass --online-store, set ${ONLINE_STORE_ENV}, or name "
            "online_store in the repo file"
        )
    return str(url)


def client_of(args: argparse.Namespace, timeout_s: float) -> FerryClient:
    """A client of ``--target`` with the TLS files and token the arguments give."""
    tls = None
    if args.tls_ca or args.tls_cert or args.tls_server_name:
        tls = ClientTls(args.tls_ca, args.tls_cert, args.tls_key, args.tls_server_name)
    return FerryClient(args.target, timeout_s=timeout_s, tls=tls, token=args.token)
