"""Models shipped inside the package, named so that commands and `stpl.load` take the name in place of a path.

    stpl predict --ckpt camvid-day --input clip.mp4 --out pred
    stpl adapt --source-ckpt camvid-day --config my_video.yaml --out adapted
    predictor = stpl.load("camvid-day")

Each model is a safetensors checkpoint in this folder, half precision, with a record beside it (`<file>.json`:
how it was made, on which frames, its sha256 and its held-out score); `docs/pretrained.md` says what each is good
for. A path to a file always wins over a name.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from stpl.errors import StplError, file_error

# name -> file in this folder
SHIPPED: dict[str, str] = {
    "camvid-day": "camvid_day.safetensors",
}


def shipped_path(name: str) -> Path:
    """The file of a shipped model (a plain path: the package is installed as files, not as a zip)."""
    return Path(str(resources.files(__name__) / SHIPPED[name]))


def resolve_checkpoint(checkpoint: str | Path, what: str = "checkpoint") -> Path:
    """`checkpoint` as a file path: itself when it is a file, the shipped model's file when it names one."""
    path = Path(checkpoint).expanduser()
    if path.is_file():
        return path
    name = str(checkpoint)
    if name in SHIPPED:
        shipped = shipped_path(name)
        if not shipped.is_file():
            raise StplError(f"the shipped model '{name}' is missing from this installation ({shipped}); reinstall stpl")
        return shipped
    raise file_error(path, what, f"give a checkpoint file, or a shipped model: {', '.join(SHIPPED)}")
