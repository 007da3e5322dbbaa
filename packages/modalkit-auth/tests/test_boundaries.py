"""What only modalkit-auth has at its boundary: boto3 in the ssm extra, no botocore filter, unguessable job ids.

The boundaries every package shares are one parametrised test: tests/test_boundaries.py at the repository root.
"""

from __future__ import annotations

import re
import subprocess
import sys
from importlib.metadata import requires

from modalkit_auth import new_job_id


def test_boto3_is_only_an_extra() -> None:
    reqs = requires("modalkit-auth") or []
    base = {re.split(r"[\s;\[<>=!~]", r, maxsplit=1)[0] for r in reqs if "extra ==" not in r}
    assert base == {"modalkit-config", "fastapi"}
    assert any(r.startswith("boto3") and re.search(r"extra\s*==\s*['\"]ssm['\"]", r) for r in reqs)


def test_import_loads_neither_boto3_nor_modal_and_configures_no_logging() -> None:
    code = (
        "import logging, sys, modalkit_auth, modalkit_auth.ssm\n"
        "banned = ['boto3', 'botocore', 'modal', 'taskiq']\n"
        "print(','.join(b for b in banned if b in sys.modules))\n"
        "print(len(logging.getLogger().handlers), logging.getLogger('botocore.parsers').filters)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.splitlines() == ["", "0 []"]


def test_job_ids_are_unguessable() -> None:
    ids = {new_job_id() for _ in range(1000)}
    assert len(ids) == 1000
    for job_id in ids:
        # token_urlsafe: 6 bits per character, so at least 22 characters carry >= 128 bits.
        assert re.fullmatch(r"[A-Za-z0-9_-]{22,}", job_id)
    assert min(len(i) for i in ids) * 6 >= 128
