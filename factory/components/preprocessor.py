"""What image processors and feature extractors share: settings read from and written to their JSON file.

A subclass names its options (``OPTIONS``), their defaults (``defaults``), the key its file names its
class under (``type_key``, e.g. ``image_processor_type``) and the ``processor_config.json`` sections
transformers 5 saves it in. ``from_directory(path)`` reads ``preprocessor_config.json`` (or that section),
``save(path)`` writes a file transformers reads back; other keys of the file are kept and written back.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from factory.components.files import PREPROCESSOR_FILE, component_config, write_json
from factory.errors import PreprocessingError, PreprocessorFileError

__all__ = ["Preprocessor"]

P = TypeVar("P", bound="Preprocessor")


class Preprocessor:
    """Settings by name (``self.options``), also reachable as attributes (``processor.size``)."""

    #: The class name written to (and read from) the file, e.g. "ViTImageProcessor".
    type_name: ClassVar[str] = "Preprocessor"
    #: The key of the file that holds ``type_name``.
    type_key: ClassVar[str] = "preprocessor_type"
    #: processor_config.json sections transformers saves this component in, first found wins.
    sections: ClassVar[tuple[str, ...]] = ()
    #: Keys of the file transformers drops when it reads it.
    dropped_keys: ClassVar[tuple[str, ...]] = ("processor_class", "_processor_class")
    OPTIONS: ClassVar[tuple[str, ...]] = ()
    defaults: ClassVar[dict[str, Any]] = {}
    model_input_names: ClassVar[tuple[str, ...]] = ()

    def __init__(self, *, name_or_path: str = "", extra: Mapping[str, Any] | None = None, **options: Any) -> None:
        self.options = self.standardize({**self.defaults, **self._given(options)})
        self.name_or_path = name_or_path
        self.extra = dict(extra or {})  # other keys of the file, written back by save()

    def _given(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """The options set (not None), after checking their names."""
        unknown = sorted(set(options) - set(self.OPTIONS))
        if unknown:
            raise PreprocessingError(
                f"{type(self).__name__} has no option {', '.join(map(repr, unknown))}",
                hint=f"options: {', '.join(self.OPTIONS)}",
            )
        return {key: value for key, value in options.items() if value is not None}

    def standardize(self, options: dict[str, Any]) -> dict[str, Any]:
        """Check the options and bring them into one form (subclasses extend it)."""
        return options

    def call_options(self, overrides: Mapping[str, Any]) -> dict[str, Any]:
        """The options of one call: the instance's, with the call's keyword arguments on top."""
        given = self._given(overrides)
        return self.standardize({**self.options, **given}) if given else self.options

    # ----------------------------------------------------------------- loading
    @classmethod
    def from_dict(cls: type[P], data: Mapping[str, Any], *, file: Path | None = None, **overrides: Any) -> P:
        """Build from the dict of a ``preprocessor_config.json`` (``overrides`` replace its keys)."""
        merged = cls.adapt({**data, **overrides})
        options = {key: merged[key] for key in cls.OPTIONS if key in merged}
        skipped = {cls.type_key, *cls.dropped_keys}
        extra = {key: value for key, value in merged.items() if key not in cls.OPTIONS and key not in skipped}
        try:
            return cls(name_or_path=str(file.parent) if file else "", extra=extra, **options)
        except PreprocessingError as err:
            if file is None or err.file is not None:
                raise
            raise PreprocessorFileError(err.message, file=file, hint=err.hint) from None

    @classmethod
    def adapt(cls, data: dict[str, Any]) -> dict[str, Any]:
        """Rewrite legacy keys of a file before it is read (subclasses override it)."""
        return data

    @classmethod
    def from_directory(cls: type[P], path: str | os.PathLike[str], **overrides: Any) -> P:
        """Load from a checkpoint directory (``preprocessor_config.json`` or a section of ``processor_config.json``)."""
        data, file = component_config(Path(path), cls.sections, cls.__name__)
        return cls.from_dict(data, file=file, **overrides)

    @classmethod
    def from_pretrained(cls: type[P], path: str | os.PathLike[str], **overrides: Any) -> P:
        """The same as :meth:`from_directory` (transformers' spelling)."""
        return cls.from_directory(path, **overrides)

    # ------------------------------------------------------------------ saving
    def to_dict(self) -> dict[str, Any]:
        """The settings as the file holds them."""
        out: dict[str, Any] = dict(self.extra)
        for key, value in self.options.items():
            if value is not None:
                out[key] = (
                    list(value) if isinstance(value, tuple) else dict(value) if isinstance(value, dict) else value
                )
        out[self.type_key] = self.type_name
        return out

    def save(self, directory: str | os.PathLike[str]) -> list[Path]:
        """Write ``preprocessor_config.json`` into ``directory`` (transformers reads it back); the paths written."""
        return [write_json(Path(directory) / PREPROCESSOR_FILE, self.to_dict())]

    def save_pretrained(self, directory: str | os.PathLike[str]) -> list[Path]:
        """The same as :meth:`save` (transformers' spelling)."""
        return self.save(directory)

    # --------------------------------------------------------------- attributes
    def __getattr__(self, name: str) -> Any:
        options = self.__dict__.get("options")
        if options is not None and name in options:
            return options[name]
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    def __repr__(self) -> str:
        settings = ", ".join(f"{k}={v!r}" for k, v in self.options.items() if v is not None)
        return f"{type(self).__name__}({settings})"
