"""Train the digits models and save each artifact into the model folder.

    cd examples/digits
    uv run python train.py                                # every model entry of modalkit.yaml
    uv run python train.py --model digits_v1 --recipe v2  # the reload demo: v2's model in digits_v1's file

The folder is ``model_settings.local_model_repository_folder`` and each file name is the entry's ``artifact``
(read from the modalkit.yaml beside this file, or the files MODALKIT_CONFIG names). Files are replaced
atomically, so a running service never reads half a file.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from digits_model import RECIPES, save_artifact, train

from modalkit_config import ConfigError, load_settings

HERE = Path(__file__).resolve().parent


def main(argv: Sequence[str] | None = None) -> int:
    """Train; returns the exit status (2 for a bad model name or configuration)."""
    parser = argparse.ArgumentParser(prog="train.py", description="Train the digits models into the model folder.")
    parser.add_argument("--model", action="append", help="a model entry to train (repeatable; default: all)")
    parser.add_argument("--recipe", choices=sorted(RECIPES), help="train this recipe instead of the entry's own")
    parser.add_argument("--config", help="config file(s), comma-separated (default: the modalkit.yaml beside me)")
    parser.add_argument("--folder", help="the model folder (default: local_model_repository_folder)")
    args = parser.parse_args(argv)

    config = args.config or os.environ.get("MODALKIT_CONFIG") or str(HERE / "modalkit.yaml")
    try:
        settings = load_settings([p.strip() for p in config.split(",") if p.strip()])
    except ConfigError as exc:
        print(f"train.py: error: {exc}", file=sys.stderr)
        return 2
    entries = settings.model_settings.model_entries
    wanted = args.model or list(entries)
    unknown = [name for name in wanted if name not in entries]
    if unknown:
        print(f"train.py: error: no model entry {unknown[0]!r} (known: {', '.join(entries)})", file=sys.stderr)
        return 2
    folder = Path(args.folder or settings.model_settings.local_model_repository_folder)
    for name in wanted:
        entry = entries[name]
        recipe = args.recipe or str(entry.get("recipe", "v2"))
        artifact = train(recipe)
        path = folder / str(entry["artifact"])
        save_artifact(artifact, path)
        model = type(artifact["model"]).__name__
        print(
            f"{name}: recipe {recipe} ({model} on {artifact['trained_on']} images), "
            f"held-out accuracy {artifact['accuracy']:.3f} -> {path}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
