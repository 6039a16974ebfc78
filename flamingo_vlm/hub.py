"""Where named Flamingo models live: a local folder, or a model bundled with the package (e.g. ``tiny-world``)."""

from __future__ import annotations

import os
from pathlib import Path

ASSETS_DIR = Path(__file__).parent / "assets"

# Models shipped inside the package, addressable by name everywhere a model is named.
BUNDLED_MODELS: dict[str, Path] = {
    "tiny-world": ASSETS_DIR / "tiny-world",
}


def resolve_model_path(name_or_path: str | os.PathLike) -> Path:
    """A bundled model name or a folder holding a saved Flamingo -> that folder.

    Nothing is downloaded: a name that is neither bundled nor an existing folder is an error.
    """
    name = str(name_or_path)
    if name in BUNDLED_MODELS:
        path = BUNDLED_MODELS[name]
        if not (path / "config.json").is_file():
            raise ValueError(f"The bundled model {name!r} is missing from this installation ({path}).")
        return path
    path = Path(name).expanduser()
    if not path.is_dir():
        raise ValueError(
            f"{name!r} is neither a bundled model ({sorted(BUNDLED_MODELS)}) nor a folder. Flamingo checkpoints are "
            f"loaded from local folders written by save_pretrained; nothing is downloaded."
        )
    if not (path / "config.json").is_file():
        raise ValueError(f"{path} has no config.json; is it a folder written by Flamingo.save_pretrained?")
    return path
