"""What the stock transformers tokenizer classes assume when a checkpoint's files do not say.

The facts are data (``tokenizer_classes.json``, read on first use); class names are looked up,
never imported.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

_DATA = Path(__file__).with_name("tokenizer_classes.json")


@lru_cache(maxsize=1)
def _data() -> dict[str, Any]:
    with open(_DATA, encoding="utf-8") as fh:
        data: dict[str, Any] = json.load(fh)
    data["token_type_classes"] = frozenset(data["token_type_classes"])
    data["left_padding_classes"] = frozenset(data["left_padding_classes"])
    names = data["special_token_names"]
    data["special_tokens"] = {cls: dict(zip(names, values)) for cls, values in data["special_tokens"].items()}
    return data


def class_of_model_type(model_type: str) -> str | None:
    """The tokenizer class transformers uses for ``model_type`` when tokenizer_config.json names none."""
    found: str | None = _data()["class_of_model_type"].get(model_type)
    return found


def special_token_defaults(class_name: str | None) -> dict[str, str | None]:
    """The class's default special tokens (``bos_token`` ... ``mask_token``); empty for unknown classes."""
    return dict(_data()["special_tokens"].get(class_name or "", {}))


def knows_special_tokens(class_name: str | None) -> bool:
    return (class_name or "") in _data()["special_tokens"]


def uses_token_types(class_name: str | None) -> bool:
    """Whether the class returns ``token_type_ids`` by default."""
    return class_name in _data()["token_type_classes"]


def pads_left(class_name: str | None) -> bool:
    """Whether the class pads on the left by default."""
    return class_name in _data()["left_padding_classes"]
