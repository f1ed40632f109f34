"""Reading third-party weight files (`.pth`) safely: tensors only, never pickled code."""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path
from typing import Any

import torch

from stpl.errors import StplError


def load_tensor_file(path: str | Path, what: str) -> Any:
    """`torch.load(path, weights_only=True)`; any failure is one StplError line naming `what` and the path.

    A file that holds more than tensors (pickled objects or code) is refused outright: torch's advice to retry
    with weights_only=False is not passed on, since that would run whatever the file holds.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise StplError(f"{what} not found: {path}")
    try:
        with warnings.catch_warnings():  # torch's notes on a foreign file's pickle protocol: the error says enough
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise StplError(
            f"cannot read {what} {path}: it holds more than tensors (pickled objects), and stpl loads weight "
            "files as tensors only"
        ) from None
    except Exception as err:  # torch.load raises several types for a foreign or damaged file
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise StplError(f"cannot read {what} {path}: {reason}") from None
