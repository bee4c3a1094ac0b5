"""Every error the factory raises: one hierarchy rooted at FactoryError.

Each error says what was wanted, what was found, where (``file:line`` or a
checkpoint path) and what to do next. Structured fields stay available to
programs (``err.file``, ``err.line``, ``err.hint``, ...).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


class FactoryError(Exception):
    """Base class of all factory errors."""

    def __init__(
        self,
        message: str,
        *,
        file: str | Path | None = None,
        line: int | None = None,
        column: int | None = None,
        hint: str | None = None,
        **fields: Any,
    ) -> None:
        self.message = message
        self.file = str(file) if file is not None else None
        self.line = line
        self.column = column
        self.hint = hint
        self.fields = fields
        for key, value in fields.items():
            setattr(self, key, value)
        super().__init__(self.__str__())

    def located(self, file: str | Path | None, line: int | None = None) -> FactoryError:
        """This error, with ``file`` (and ``line``) filled in if it named no file yet; returns ``self``."""
        if self.file is None and file is not None:
            self.file = str(file)
            self.line = line if line is not None else self.line
            self.args = (self.__str__(),)
        return self

    @property
    def location(self) -> str | None:
        """``file:line:column`` as far as known."""
        if self.file is None:
            return None
        parts = [self.file]
        if self.line is not None:
            parts.append(str(self.line))
            if self.column is not None:
                parts.append(str(self.column))
        return ":".join(parts)

    def __str__(self) -> str:
        text = self.message
        if self.location:
            text = f"{self.location}: {text}"
        if self.hint:
            text = f"{text}\n  hint: {self.hint}"
        return text

    def __reduce__(self) -> tuple[Any, ...]:  # keep structured fields across pickling (workers)
        return (_rebuild, (type(self), self.message, self.file, self.line, self.column, self.hint, self.fields))


def _rebuild(
    cls: type[FactoryError],
    message: str,
    file: str | None,
    line: int | None,
    column: int | None,
    hint: str | None,
    fields: dict[str, Any],
) -> FactoryError:
    return cls(message, file=file, line=line, column=column, hint=hint, **fields)


# --- registry documents -------------------------------------------------------
class RegistryError(FactoryError):
    """A registry source could not be read or merged."""


class YAMLSyntaxError(RegistryError):
    """A YAML file is not well-formed, uses forbidden features, or is empty/not UTF-8."""


class SchemaError(RegistryError):
    """A YAML document does not follow its JSON Schema."""


class ConflictError(RegistryError):
    """Two sources register the same key without an explicit override."""


class OverrideError(RegistryError):
    """An override is malformed (no reason) or stale (replaces nothing)."""


class AliasError(RegistryError):
    """A task alias is ambiguous or collides with a task name."""


# --- lookups ------------------------------------------------------------------
class NotFoundError(FactoryError, LookupError):
    """Something asked for is not in the table."""


class UnknownTaskError(NotFoundError):
    """The task (or alias) is not in the task table."""


class UnknownArchitectureError(NotFoundError):
    """The architecture is not registered."""


class NoRegistrationError(NotFoundError):
    """The architecture exists but does not serve the task."""


class UnknownCheckpointError(NotFoundError):
    """A name is neither a named checkpoint, a local path, an architecture nor a Hub repo."""


class InvalidArgumentError(FactoryError, TypeError):
    """A public function was called with an argument of the wrong type (a task that is not a string, ...)."""


# --- building -----------------------------------------------------------------
class TargetImportError(FactoryError):
    """A registered target could not be imported."""


class MissingDependencyError(FactoryError, ImportError):
    """An optional dependency needed for this build is not installed."""


class ConfigError(FactoryError):
    """A checkpoint's config.json is missing, malformed or cannot be dispatched."""


class ModelTooLargeError(FactoryError, MemoryError):
    """A model does not fit the free memory of its target device; raised before anything is allocated."""


class ParallelError(FactoryError):
    """A tensor-parallel or FSDP build cannot be done as asked (plan, mesh, divisibility, process group)."""


class ModelInputError(FactoryError, ValueError):
    """A built model (or its ``generate``) was called with inputs it cannot use: wrong shapes, missing or
    conflicting arguments."""


class CheckpointError(FactoryError):
    """A checkpoint's files are missing, corrupt or refused."""


class WeightsMismatchError(CheckpointError):
    """Missing, unexpected or wrongly shaped tensors under strict loading."""


class IntegrityError(CheckpointError):
    """A file's sha256 does not match its pin."""


class PickleRefusedError(CheckpointError):
    """A pickle weights file was found and allow_pickle is False."""


class TokenizerError(FactoryError, ValueError):
    """A tokenizer was called with arguments it cannot honour (padding without a pad token, ...)."""


class TokenizerFileError(CheckpointError):
    """A tokenizer file is missing, malformed or unusable."""


class PreprocessingError(FactoryError, ValueError):
    """An image processor, feature extractor or processor was given input it cannot use: an image it cannot
    read, audio at the wrong sampling rate, options that contradict each other."""


class PreprocessorFileError(CheckpointError):
    """A preprocessing file (preprocessor_config.json, processor_config.json, vocab.json) is missing or malformed."""


class HubError(FactoryError):
    """A Hub download failed (offline, not found, unauthorised)."""


class UntrustedCodeWarning(UserWarning):
    """A checkpoint file names custom code (``auto_map``); the factory never imports it."""


class SaveError(FactoryError):
    """A checkpoint could not be written; the target was left untouched."""


class RegistrationError(RegistryError):
    """A runtime ``register()`` call (``factory.auto``) breaks a consistency rule or collides with an entry."""


class UnsupportedOptionError(FactoryError, TypeError):
    """A keyword argument (often one of transformers') that factory refuses or does not implement."""


class ConcurrentWriteWarning(UserWarning):
    """Another process wrote into a checkpoint directory while it was being saved; its files were kept."""
