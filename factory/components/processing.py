"""The ``processor`` component: a tokenizer and an image processor or feature extractor behind one call.

- :class:`CLIPProcessor`, :class:`SiglipProcessor`: ``processor(text=..., images=...)`` gives the tokenizer's
  ``input_ids`` / ``attention_mask`` and the image processor's ``pixel_values``;
- :class:`WhisperProcessor`: ``processor(audio, sampling_rate=16000)`` gives ``input_features``; with
  ``text=`` the token ids come as ``labels``; ``batch_decode`` / ``decode`` / ``get_decoder_prompt_ids``
  are the tokenizer's;
- :class:`Wav2Vec2Processor`: ``processor(audio, sampling_rate=16000)`` gives ``input_values``; ``text=``
  gives ``labels``; ``batch_decode`` is the CTC tokenizer's.

Keyword arguments of a call go to the part that takes them (tokenizer: ``padding``, ``truncation``,
``max_length``, ...; image processor: ``do_resize``, ``size``, ...; feature extractor: ``padding``,
``max_length``, ``return_attention_mask``, ...), ``return_tensors`` to both, as transformers'
``ProcessorMixin`` does. ``from_directory(path)`` reads what ``save_pretrained`` writes (``processor_config.json``
or ``preprocessor_config.json``, and the tokenizer files); ``save(path)`` writes what transformers reads.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from factory.components.batch_feature import BatchFeature
from factory.components.clip_tokenizer import CLIPTokenizer
from factory.components.ctc_tokenizer import Wav2Vec2CTCTokenizer
from factory.components.feature_extraction import Wav2Vec2FeatureExtractor, WhisperFeatureExtractor
from factory.components.files import PROCESSOR_FILE, write_json
from factory.components.image_processing import CLIPImageProcessor, SiglipImageProcessor
from factory.components.preprocessor import Preprocessor
from factory.components.tokenizer import Tokenizer
from factory.components.whisper_tokenizer import WhisperTokenizer
from factory.errors import PreprocessingError

__all__ = ["CLIPProcessor", "Processor", "SiglipProcessor", "Wav2Vec2Processor", "WhisperProcessor"]


class Processor:
    """A tokenizer and a preprocessor (image processor or feature extractor) of one model family."""

    processor_class: ClassVar[str] = "Processor"
    tokenizer_class: ClassVar[type[Any]] = Tokenizer
    preprocessor_class: ClassVar[type[Preprocessor]] = Preprocessor
    #: the attribute (and processor_config.json section) the preprocessor goes by
    preprocessor_name: ClassVar[str] = "image_processor"

    def __init__(self, preprocessor: Any, tokenizer: Any, *, name_or_path: str = "") -> None:
        setattr(self, self.preprocessor_name, preprocessor)
        self.tokenizer = tokenizer
        self.name_or_path = name_or_path

    @property
    def preprocessor(self) -> Any:
        return getattr(self, self.preprocessor_name)

    @classmethod
    def from_directory(cls, path: str | os.PathLike[str], **overrides: Any) -> Processor:
        """Load both parts from a checkpoint directory (``overrides`` go to the preprocessor)."""
        preprocessor = cls.preprocessor_class.from_directory(path, **overrides)
        tokenizer = cls.tokenizer_class.from_directory(path)
        return cls(preprocessor, tokenizer, name_or_path=str(path))

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike[str], **overrides: Any) -> Processor:
        """The same as :meth:`from_directory` (transformers' spelling)."""
        return cls.from_directory(path, **overrides)

    def save(self, directory: str | os.PathLike[str]) -> list[Path]:
        """The tokenizer's files and ``processor_config.json`` (the preprocessor's settings in their section),
        as transformers 5 saves a processor; transformers' ``AutoProcessor`` reads them back."""
        target = Path(directory)
        written = list(self.tokenizer.save(target))
        config = {self.preprocessor_name: self.preprocessor.to_dict(), "processor_class": self.processor_class}
        written.append(write_json(target / PROCESSOR_FILE, config))
        return written

    def save_pretrained(self, directory: str | os.PathLike[str]) -> list[Path]:
        return self.save(directory)

    @property
    def model_input_names(self) -> list[str]:
        names = list(self.tokenizer.model_input_names) + list(self.preprocessor.model_input_names)
        return list(dict.fromkeys(names))

    def batch_decode(self, *args: Any, **kwargs: Any) -> Any:
        """The tokenizer's ``batch_decode``."""
        return self.tokenizer.batch_decode(*args, **kwargs)

    def decode(self, *args: Any, **kwargs: Any) -> Any:
        """The tokenizer's ``decode``."""
        return self.tokenizer.decode(*args, **kwargs)

    def _split(self, kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """Keyword arguments for the tokenizer and for the preprocessor: each goes to every part whose call
        takes it (``return_tensors``, ``padding``, ``max_length`` may go to both), as transformers does."""
        text_keys = _keywords(self.tokenizer.__call__) - {"text", "text_pair"}
        other_keys = _keywords(self.preprocessor.__call__) - {"images", "raw_speech"}
        if _takes_options(self.preprocessor.__call__):  # image processors: options are call keywords too
            other_keys |= set(self.preprocessor.OPTIONS)
        text = {k: v for k, v in kwargs.items() if k in text_keys}
        other = {k: v for k, v in kwargs.items() if k in other_keys}
        unknown = sorted(set(kwargs) - text_keys - other_keys)
        if unknown:
            raise PreprocessingError(
                f"{type(self).__name__} got unexpected keyword argument(s) {', '.join(map(repr, unknown))}",
                hint=f"the tokenizer takes {', '.join(sorted(text_keys))}; "
                f"the {self.preprocessor_name.replace('_', ' ')} takes {', '.join(sorted(other_keys))}",
            )
        return text, other

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.preprocessor_name}={self.preprocessor!r}, tokenizer={self.tokenizer!r})"


class _ImageTextProcessor(Processor):
    """Text through the tokenizer, images through the image processor, one BatchFeature."""

    def __call__(self, text: Any = None, images: Any = None, **kwargs: Any) -> BatchFeature:
        """``input_ids`` / ``attention_mask`` for ``text``, ``pixel_values`` for ``images`` (either or both)."""
        if text is None and images is None:
            raise PreprocessingError(f"{type(self).__name__} needs text, images or both")
        text_kwargs, image_kwargs = self._split(kwargs)
        out = BatchFeature()
        if text is not None:
            out.update(self.tokenizer(text, **text_kwargs))
        if images is not None:
            out.update(self.preprocessor(images, **image_kwargs))
        return out


class CLIPProcessor(_ImageTextProcessor):
    """:class:`~factory.components.clip_tokenizer.CLIPTokenizer` and
    :class:`~factory.components.image_processing.CLIPImageProcessor`."""

    processor_class = "CLIPProcessor"
    tokenizer_class = CLIPTokenizer
    preprocessor_class = CLIPImageProcessor


class SiglipProcessor(_ImageTextProcessor):
    """SigLIP's tokenizer (tokenizer.json) and :class:`~factory.components.image_processing.SiglipImageProcessor`."""

    processor_class = "SiglipProcessor"
    preprocessor_class = SiglipImageProcessor


class _SpeechProcessor(Processor):
    """Audio through the feature extractor, text through the tokenizer (as ``labels`` next to audio)."""

    preprocessor_name = "feature_extractor"

    def __call__(
        self, audio: Any = None, *, text: Any = None, sampling_rate: int | None = None, **kwargs: Any
    ) -> BatchFeature:
        """Features of ``audio`` (checked against ``sampling_rate``); ``text`` gives ``input_ids``, or ``labels``
        when audio is given too."""
        if audio is None and text is None:
            raise PreprocessingError(f"{type(self).__name__} needs audio, text or both")
        text_kwargs, audio_kwargs = self._split(kwargs)
        out = BatchFeature()
        if audio is not None:
            out.update(self.preprocessor(audio, sampling_rate=sampling_rate, **audio_kwargs))
        if text is not None:
            encodings = self.tokenizer(text, **text_kwargs)
            if audio is None:
                out.update(encodings)
            else:
                out["labels"] = encodings["input_ids"]
        return out


class WhisperProcessor(_SpeechProcessor):
    """:class:`~factory.components.feature_extraction.WhisperFeatureExtractor` and
    :class:`~factory.components.whisper_tokenizer.WhisperTokenizer`."""

    processor_class = "WhisperProcessor"
    tokenizer_class = WhisperTokenizer
    preprocessor_class = WhisperFeatureExtractor

    def get_decoder_prompt_ids(
        self, task: str | None = None, language: str | None = None, no_timestamps: bool = True
    ) -> list[tuple[int, int]]:
        """The tokenizer's forced decoder ids for ``language`` and ``task``."""
        return self.tokenizer.get_decoder_prompt_ids(task=task, language=language, no_timestamps=no_timestamps)  # type: ignore[no-any-return]

    def get_prompt_ids(self, text: str, return_tensors: str | None = None) -> Any:
        return self.tokenizer.get_prompt_ids(text, return_tensors=return_tensors)


class Wav2Vec2Processor(_SpeechProcessor):
    """:class:`~factory.components.feature_extraction.Wav2Vec2FeatureExtractor` and
    :class:`~factory.components.ctc_tokenizer.Wav2Vec2CTCTokenizer`."""

    processor_class = "Wav2Vec2Processor"
    tokenizer_class = Wav2Vec2CTCTokenizer
    preprocessor_class = Wav2Vec2FeatureExtractor


def _takes_options(call: Callable[..., Any]) -> bool:
    return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in inspect.signature(call).parameters.values())


def _keywords(call: Callable[..., Any]) -> set[str]:
    """The names a callable takes as keyword arguments (not ``*args`` / ``**kwargs``)."""
    kinds = (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return {name for name, p in inspect.signature(call).parameters.items() if p.kind in kinds}
