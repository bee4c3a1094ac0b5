"""The ``tokenizer`` component: a checkpoint's tokenizer on top of the ``tokenizers`` library.

``Tokenizer.from_directory(path)`` reads what transformers writes next to a model:
``tokenizer.json`` (the whole pipeline) plus ``tokenizer_config.json`` /
``special_tokens_map.json`` (special tokens, padding side, ``model_max_length``,
chat template; ``chat_template.jinja`` and ``additional_chat_templates/*.jinja``
too). Without ``tokenizer.json`` it rebuilds the pipeline transformers builds from
``vocab.txt`` (BERT WordPiece) or ``vocab.json`` + ``merges.txt`` (GPT-2 byte-level
BPE). Calling the tokenizer gives what transformers' fast tokenizer gives.

Checkpoint files are untrusted data: ``auto_map`` and ``tokenizer_class`` are
never followed (the class name is only looked up in a small table of what the
stock classes default to). Importing this module does not import torch; asking
for ``return_tensors="pt"`` does.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from tokenizers import AddedToken, decoders, normalizers, pre_tokenizers, processors
from tokenizers import Tokenizer as Backend
from tokenizers.models import BPE, WordPiece

from factory.components import tokenizer_classes as classes
from factory.components.chat_template import compile_chat_template, plain_template_input
from factory.components.files import write_text
from factory.errors import (
    SaveError,
    TokenizerError,
    TokenizerFileError,
    UntrustedCodeWarning,
)
from factory.untrusted import MAX_TEMPLATE_BYTES, MAX_TOKENIZER_BYTES, check_file, read_json, read_text

__all__ = ["TOKENIZER_FILE_PATTERNS", "BatchEncoding", "Tokenizer", "TokenizerError", "TokenizerFileError"]

TOKENIZER_FILE = "tokenizer.json"
CONFIG_FILE = "tokenizer_config.json"
SPECIAL_TOKENS_MAP_FILE = "special_tokens_map.json"
CHAT_TEMPLATE_FILE = "chat_template.jinja"
#: Templates read from additional_chat_templates/ (real checkpoints ship one or two).
MAX_TEMPLATES = 64
CHAT_TEMPLATE_DIR = "additional_chat_templates"
#: Files (glob patterns) a checkpoint's tokenizer may need; fetch these for the ``tokenizer`` component.
TOKENIZER_FILE_PATTERNS = (
    TOKENIZER_FILE,
    CONFIG_FILE,
    SPECIAL_TOKENS_MAP_FILE,
    CHAT_TEMPLATE_FILE,
    f"{CHAT_TEMPLATE_DIR}/*.jinja",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "config.json",
)

#: transformers' "no limit" model_max_length, and the threshold above which it means "no limit".
VERY_LARGE_INTEGER = int(1e30)
LARGE_INTEGER = int(1e20)

#: Named special tokens, in the order transformers registers them.
SPECIAL_TOKEN_NAMES = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")

# Classes whose vocab-file pipeline is exactly the BERT / GPT-2 one rebuilt here.
_WORDPIECE_CLASSES = frozenset(
    {
        "BertTokenizer",
        "DistilBertTokenizer",
        "ElectraTokenizer",
        "MobileBertTokenizer",
        "SqueezeBertTokenizer",
        "LayoutLMTokenizer",
        "ConvBertTokenizer",
        "RetriBertTokenizer",
        "PreTrainedTokenizer",
        "PreTrainedTokenizerFast",
        "TokenizersBackend",
    }
)
_BYTE_BPE_CLASSES = frozenset({"GPT2Tokenizer", "PreTrainedTokenizer", "PreTrainedTokenizerFast", "TokenizersBackend"})

_WITH_TOKEN_TYPES = ("input_ids", "token_type_ids", "attention_mask")
_WITHOUT_TOKEN_TYPES = ("input_ids", "attention_mask")
_PADDING = {"do_not_pad": None, "longest": "longest", "max_length": "max_length"}
_TRUNCATION = ("longest_first", "only_first", "only_second", "do_not_truncate")
#: tokenizer_config.json keys not written back by save() (code pointers, file paths, per-load switches).
_NOT_SAVED = frozenset(
    {
        "auto_map",
        "add_bos_token",
        "add_eos_token",
        "chat_template",
        "added_tokens_decoder",
        "additional_special_tokens",
        "extra_special_tokens",
        "vocab_file",
        "merges_file",
        "tokenizer_file",
        "name_or_path",
        "special_tokens_map_file",
        "model_specific_special_tokens",
        "max_len",
    }
)


class BatchEncoding(dict[str, Any]):
    """What calling a :class:`Tokenizer` returns: a dict of model inputs, also reachable as attributes.

    ``encodings`` keeps the ``tokenizers.Encoding`` objects (one per sequence) for offsets, word ids, etc.
    """

    def __init__(self, data: Mapping[str, Any], encodings: Sequence[Any] = ()) -> None:
        super().__init__(data)
        self.encodings = list(encodings)

    def __getattr__(self, key: str) -> Any:
        try:
            return self[key]
        except KeyError:
            raise AttributeError(f"BatchEncoding has no field {key!r}; it has {sorted(self)}") from None

    def tokens(self, index: int = 0) -> list[str]:
        """The token strings of sequence ``index``."""
        return list(self.encodings[index].tokens)

    def word_ids(self, index: int = 0) -> list[int | None]:
        """The word each token of sequence ``index`` comes from (``None`` for special tokens)."""
        return list(self.encodings[index].word_ids)

    def to(self, device: Any) -> BatchEncoding:
        """Move every tensor value to ``device`` (in place); returns self."""
        for key, value in self.items():
            if hasattr(value, "to"):
                self[key] = value.to(device)
        return self


def _token_property(name: str, doc: str) -> property:
    return property(lambda self: self._token(name), lambda self, value: self._set_token(name, value), doc=doc)


def _token_id_property(name: str) -> property:
    return property(lambda self: self._token_id(name), doc=f"Id of {name} (or None).")


class Tokenizer:
    """A fast tokenizer with the calling conventions of transformers' tokenizers.

    Build one with :meth:`from_directory`; the constructor is for wrapping a
    ``tokenizers.Tokenizer`` you built yourself. ``special_tokens`` maps names
    (``bos_token``, ``pad_token``, ..., or model-specific ones like ``image_token``)
    to token strings or ``tokenizers.AddedToken``; those missing from the backend
    are added to it as special tokens, so ``skip_special_tokens`` drops them.
    """

    def __init__(
        self,
        backend: Backend,
        *,
        special_tokens: Mapping[str, str | AddedToken | None] | None = None,
        extra_special_tokens: Iterable[str | AddedToken] = (),
        padding_side: str = "right",
        truncation_side: str = "right",
        model_max_length: int | None = None,
        model_input_names: Sequence[str] = _WITHOUT_TOKEN_TYPES,
        chat_template: str | Mapping[str, str] | None = None,
        clean_up_tokenization_spaces: bool = False,
        split_special_tokens: bool = False,
        name_or_path: str = "",
        config: Mapping[str, Any] | None = None,
    ) -> None:
        self._backend = backend
        self._backend.no_padding()
        self._backend.no_truncation()
        self._special: dict[str, str | AddedToken] = {
            name: value for name, value in (special_tokens or {}).items() if value is not None
        }
        self._extra: list[str | AddedToken] = list(extra_special_tokens)
        self.padding_side = padding_side
        self.truncation_side = truncation_side
        self.model_max_length = VERY_LARGE_INTEGER if model_max_length is None else int(model_max_length)
        self.model_input_names = list(model_input_names)
        self.chat_template = dict(chat_template) if isinstance(chat_template, Mapping) else chat_template
        self.clean_up_tokenization_spaces = bool(clean_up_tokenization_spaces)
        self.name_or_path = name_or_path
        self._config = dict(config or {})
        self._backend.encode_special_tokens = bool(split_special_tokens)
        self._register_special_tokens()

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_directory(cls, path: str | os.PathLike[str], **overrides: Any) -> Tokenizer:
        """Load the tokenizer of a local checkpoint directory.

        ``overrides`` replace ``tokenizer_config.json`` keys (``padding_side="left"``,
        ``pad_token="<|endoftext|>"``, ``add_bos_token=True``, ...), as keyword
        arguments to transformers' ``from_pretrained`` do.
        """
        directory = Path(path)
        if not directory.is_dir():
            found = "a file" if directory.exists() else "nothing"
            raise TokenizerFileError(
                f"expected a checkpoint directory holding tokenizer files, found {found}",
                file=directory,
                hint="pass the directory that contains tokenizer.json (or vocab.txt / vocab.json + merges.txt)",
            )
        config_path = directory / CONFIG_FILE
        config = _read_json_object(config_path) if _present(config_path) else {}
        if "auto_map" in config:
            warnings.warn(_auto_map_message(config_path, config["auto_map"]), UntrustedCodeWarning, stacklevel=2)
            config.pop("auto_map")
        overrides.pop("auto_map", None)
        config.update(overrides)
        chat_template = _read_chat_templates(directory, config, config_path)

        # Legacy special_tokens_map.json, read only when tokenizer_config.json has no added_tokens_decoder.
        map_path = directory / SPECIAL_TOKENS_MAP_FILE
        if "added_tokens_decoder" not in config and _present(map_path):
            for key, value in _read_json_object(map_path).items():
                if key not in overrides or not overrides[key]:
                    config[key] = value
        if "additional_special_tokens" in config and not config.get("extra_special_tokens"):
            config["extra_special_tokens"] = config.pop("additional_special_tokens")

        class_name = _declared_class(config, directory)
        tokenizer_json = directory / TOKENIZER_FILE
        post_processor: tuple[bool, bool] | str | None = None  # what to rebuild after tokens are registered
        if _present(tokenizer_json):
            backend = _load_backend(tokenizer_json)
            if class_name == "LlamaTokenizer" and isinstance(backend.pre_tokenizer, pre_tokenizers.ByteLevel):
                class_name = None  # Llama-3 style files are served generically, as transformers does
            # The file's post-processor decides BOS/EOS; config flags count only when passed explicitly.
            if "add_bos_token" in overrides or "add_eos_token" in overrides:
                post_processor = (bool(config.get("add_bos_token")), bool(config.get("add_eos_token")))
            elif backend.post_processor is None:
                post_processor = (False, False)
            if backend.padding is not None:
                config.setdefault("pad_token", backend.padding["pad_token"])
                config.setdefault("padding_side", backend.padding["direction"])
            if backend.truncation is not None:
                config.setdefault("truncation_side", backend.truncation["direction"])
        elif _present(directory / "vocab.txt"):
            _warn_if_other_pipeline(class_name, _WORDPIECE_CLASSES, "BERT WordPiece", directory / "vocab.txt")
            class_name = class_name or "BertTokenizer"
            _apply_class_defaults(config, class_name if classes.knows_special_tokens(class_name) else "BertTokenizer")
            backend = _wordpiece_backend(directory / "vocab.txt", config, config_path)
            post_processor = "bert"
        elif _present(directory / "vocab.json") and _present(directory / "merges.txt"):
            _warn_if_other_pipeline(class_name, _BYTE_BPE_CLASSES, "GPT-2 byte-level BPE", directory / "vocab.json")
            class_name = class_name or "GPT2Tokenizer"
            _apply_class_defaults(config, class_name if classes.knows_special_tokens(class_name) else "GPT2Tokenizer")
            backend = _byte_level_bpe_backend(directory / "vocab.json", directory / "merges.txt", config)
            post_processor = (bool(config.get("add_bos_token")), bool(config.get("add_eos_token")))
        else:
            raise TokenizerFileError(
                _no_tokenizer_files_message(directory), file=directory, hint=_no_tokenizer_files_hint(directory)
            )
        _apply_class_defaults(config, class_name)

        special, extra = _special_tokens(config, config_path)
        backend_added = {token.content for token in backend.get_added_tokens_decoder().values()}
        saved_added = [
            token for token in _added_tokens_decoder(config, config_path) if token.content not in backend_added
        ]
        if saved_added:
            backend.add_tokens(saved_added)

        tokenizer = cls(
            backend,
            special_tokens=special,
            extra_special_tokens=extra,
            padding_side=_side(
                config, "padding_side", "left" if classes.pads_left(class_name) else "right", config_path
            ),
            truncation_side=_side(config, "truncation_side", "right", config_path),
            model_max_length=_max_length(config, config_path),
            model_input_names=_input_names(config, class_name, config_path),
            chat_template=chat_template,
            clean_up_tokenization_spaces=bool(config.get("clean_up_tokenization_spaces", False)),
            split_special_tokens=bool(config.get("split_special_tokens", False)),
            name_or_path=str(directory),
            config=config,
        )
        if post_processor == "bert":
            tokenizer._set_bert_post_processor()
        elif isinstance(post_processor, tuple):
            tokenizer._set_bos_eos_post_processor(*post_processor)
        return tokenizer

    from_pretrained = from_directory

    def _register_special_tokens(self) -> None:
        """Add named and extra special tokens missing from the backend's added vocabulary (as transformers does)."""
        present = {token.content for token in self._backend.get_added_tokens_decoder().values()}
        named = {str(value) for value in self._special.values()}
        to_add: list[AddedToken] = []
        for value in [*self._special.values(), *self._extra]:
            if str(value) in present or any(str(value) == token.content for token in to_add):
                continue
            if isinstance(value, AddedToken):
                token = _copy_added_token(value, special=True if str(value) in named else None)
            else:
                token = AddedToken(str(value), special=True)
            to_add.append(token)
        if to_add:
            self._backend.add_tokens(to_add)

    def _set_bert_post_processor(self) -> None:
        cls_token, sep_token = self.cls_token, self.sep_token
        if cls_token is None or sep_token is None:
            raise TokenizerFileError(
                "a BERT-style vocab.txt tokenizer needs cls_token and sep_token, but the config sets them to null",
                file=Path(self.name_or_path) / CONFIG_FILE,
                hint="remove the null entries or ship a tokenizer.json",
            )
        cls_id = self.cls_token_id if self.cls_token_id is not None else 2
        sep_id = self.sep_token_id if self.sep_token_id is not None else 3
        self._backend.post_processor = processors.TemplateProcessing(
            single=f"{cls_token}:0 $A:0 {sep_token}:0",
            pair=f"{cls_token}:0 $A:0 {sep_token}:0 $B:1 {sep_token}:1",
            special_tokens=[(cls_token, cls_id), (sep_token, sep_id)],
        )

    def _set_bos_eos_post_processor(self, add_bos: bool, add_eos: bool) -> None:
        bos, eos = self.bos_token, self.eos_token
        add_bos, add_eos = add_bos and bos is not None, add_eos and eos is not None
        single = f"{(bos + ':0 ') if add_bos else ''}$A:0{(' ' + eos + ':0') if add_eos else ''}"
        pair = f"{single}{(' ' + bos + ':1') if add_bos else ''} $B:1{(' ' + eos + ':1') if add_eos else ''}"
        special = ([(bos, self.bos_token_id)] if add_bos else []) + ([(eos, self.eos_token_id)] if add_eos else [])
        self._backend.post_processor = processors.TemplateProcessing(single=single, pair=pair, special_tokens=special)

    # ---------------------------------------------------------- special tokens
    @property
    def backend(self) -> Backend:
        """The underlying ``tokenizers.Tokenizer``."""
        return self._backend

    backend_tokenizer = backend

    def _token(self, name: str) -> str | None:
        value = self._special.get(name)
        return None if value is None else str(value)

    def _token_id(self, name: str) -> int | None:
        token = self._token(name)
        return None if token is None else self._to_id(token)

    def _set_token(self, name: str, value: str | None) -> None:
        if value is None:
            self._special.pop(name, None)
            return
        if not isinstance(value, (str, AddedToken)):
            raise TokenizerError(f"{name} must be a string, got {type(value).__name__}")
        if self._backend.token_to_id(str(value)) is None:
            raise TokenizerError(
                f"cannot set {name} to {str(value)!r}: it is not in the vocabulary",
                hint="use a token the model already knows (for GPT-2 style models: tokenizer.pad_token = "
                "tokenizer.eos_token)",
            )
        self._special[name] = value

    bos_token = _token_property("bos_token", "Beginning-of-sequence token (or None).")
    eos_token = _token_property("eos_token", "End-of-sequence token (or None).")
    unk_token = _token_property("unk_token", "Unknown token (or None).")
    sep_token = _token_property("sep_token", "Separator token (or None).")
    pad_token = _token_property("pad_token", "Padding token (or None); settable to a token already in the vocabulary.")
    cls_token = _token_property("cls_token", "Classifier token (or None).")
    mask_token = _token_property("mask_token", "Mask token (or None).")
    bos_token_id = _token_id_property("bos_token")
    eos_token_id = _token_id_property("eos_token")
    unk_token_id = _token_id_property("unk_token")
    sep_token_id = _token_id_property("sep_token")
    pad_token_id = _token_id_property("pad_token")
    cls_token_id = _token_id_property("cls_token")
    mask_token_id = _token_id_property("mask_token")

    @property
    def pad_token_type_id(self) -> int:
        return 0

    @property
    def special_tokens_map(self) -> dict[str, str]:
        """Named special tokens (standard and model-specific) as strings."""
        return {name: str(value) for name, value in self._special.items()}

    @property
    def extra_special_tokens(self) -> list[str]:
        """Special tokens without a name (transformers' ``additional_special_tokens``)."""
        return [str(token) for token in self._extra]

    @property
    def all_special_tokens(self) -> list[str]:
        """Every special token, named first, without duplicates."""
        return list(dict.fromkeys([*self.special_tokens_map.values(), *self.extra_special_tokens]))

    @property
    def all_special_ids(self) -> list[int]:
        return [i for i in map(self._to_id, self.all_special_tokens) if i is not None]

    # --------------------------------------------------------------- vocabulary
    @property
    def vocab_size(self) -> int:
        """Size of the base vocabulary, without added tokens."""
        return self._backend.get_vocab_size(with_added_tokens=False)

    def __len__(self) -> int:
        """Size of the full vocabulary, added tokens included."""
        return self._backend.get_vocab_size(with_added_tokens=True)

    def get_vocab(self) -> dict[str, int]:
        return self._backend.get_vocab(with_added_tokens=True)

    def convert_tokens_to_ids(self, tokens: str | Iterable[str]) -> int | list[int | None] | None:
        """Token string(s) to id(s); unknown tokens give the unk id (``None`` without an unk token)."""
        if isinstance(tokens, str):
            return self._to_id(tokens)
        return [self._to_id(token) for token in tokens]

    def _to_id(self, token: str) -> int | None:
        index = self._backend.token_to_id(token)
        if index is None and "unk_token" in self._special:
            return self._backend.token_to_id(str(self._special["unk_token"]))
        return index

    def convert_ids_to_tokens(
        self, ids: int | Iterable[int], skip_special_tokens: bool = False
    ) -> str | list[str | None] | None:
        """Id(s) to token string(s)."""
        ids = _to_python(ids)
        if isinstance(ids, int):
            return self._backend.id_to_token(ids)
        skip = set(self.all_special_ids) if skip_special_tokens else set()
        return [self._backend.id_to_token(int(i)) for i in ids if int(i) not in skip]

    def tokenize(self, text: str, pair: str | None = None, add_special_tokens: bool = False) -> list[str]:
        """The token strings of ``text`` (no special tokens unless asked)."""
        return list(self._encode([text] if pair is None else [(text, pair)], add_special_tokens)[0].tokens)

    def num_special_tokens_to_add(self, pair: bool = False) -> int:
        return self._backend.num_special_tokens_to_add(pair)

    # ---------------------------------------------------------------- encoding
    def __call__(
        self,
        text: str | Sequence[str],
        text_pair: str | Sequence[str] | None = None,
        *,
        add_special_tokens: bool = True,
        padding: bool | str = False,
        truncation: bool | str | None = None,
        max_length: int | None = None,
        pad_to_multiple_of: int | None = None,
        padding_side: str | None = None,
        return_tensors: str | None = None,
        return_token_type_ids: bool | None = None,
        return_attention_mask: bool | None = None,
        return_offsets_mapping: bool = False,
        return_special_tokens_mask: bool = False,
    ) -> BatchEncoding:
        """Tokenize one text or a batch (optionally with a second text each) into model inputs.

        Padding (``True``/``"longest"``, ``"max_length"``) and truncation (``True``/
        ``"longest_first"``, ``"only_first"``, ``"only_second"``) follow transformers:
        ``max_length`` alone turns truncation on; without ``max_length`` both use
        ``model_max_length``. ``return_tensors="pt"`` gives torch tensors with a batch
        dimension; otherwise lists, unbatched for a single text.
        """
        batched = _check_text(text, "text")
        if text_pair is not None:
            pair_batched = _check_text(text_pair, "text_pair")
            if batched != pair_batched or (batched and len(text) != len(text_pair)):
                raise TokenizerError(
                    "text and text_pair must both be single strings or lists of the same length, got "
                    f"{_describe(text)} and {_describe(text_pair)}"
                )
        inputs: list[Any]
        if batched:
            inputs = list(zip(text, text_pair)) if text_pair is not None else list(text)
        else:
            inputs = [(text, text_pair) if text_pair else text]
        if return_tensors not in (None, "pt"):
            raise TokenizerError(
                f"return_tensors={return_tensors!r} is not supported",
                hint='use return_tensors="pt" for torch tensors or None for lists',
            )

        pad, truncate, max_length = self._strategies(padding, truncation, max_length, pad_to_multiple_of)
        try:
            if truncate is not None:
                self._backend.enable_truncation(
                    max_length or 0, stride=0, strategy=truncate, direction=self.truncation_side
                )
            if pad is not None:
                self._backend.enable_padding(
                    direction=_check_side(padding_side or self.padding_side, "padding_side"),
                    pad_id=self.pad_token_id,
                    pad_type_id=self.pad_token_type_id,
                    pad_token=self.pad_token,
                    length=max_length if pad == "max_length" else None,
                    pad_to_multiple_of=pad_to_multiple_of,
                )
            encodings = self._encode(inputs, add_special_tokens)
        finally:
            self._backend.no_padding()
            self._backend.no_truncation()
        if truncate is None:
            self._warn_if_too_long(encodings)

        if return_token_type_ids is None:
            return_token_type_ids = "token_type_ids" in self.model_input_names
        if return_attention_mask is None:
            return_attention_mask = "attention_mask" in self.model_input_names
        data: dict[str, list[Any]] = {"input_ids": [list(e.ids) for e in encodings]}
        if return_token_type_ids:
            data["token_type_ids"] = [list(e.type_ids) for e in encodings]
        if return_attention_mask:
            data["attention_mask"] = [list(e.attention_mask) for e in encodings]
        if return_special_tokens_mask:
            data["special_tokens_mask"] = [list(e.special_tokens_mask) for e in encodings]
        if return_offsets_mapping:
            data["offset_mapping"] = [list(e.offsets) for e in encodings]

        if return_tensors == "pt":
            return BatchEncoding({key: _as_tensor(key, value) for key, value in data.items()}, encodings)
        if not batched:
            return BatchEncoding({key: value[0] for key, value in data.items()}, encodings)
        return BatchEncoding(data, encodings)

    def encode(
        self,
        text: str,
        text_pair: str | None = None,
        *,
        add_special_tokens: bool = True,
        padding: bool | str = False,
        truncation: bool | str | None = None,
        max_length: int | None = None,
        return_tensors: str | None = None,
    ) -> Any:
        """The ``input_ids`` of one text (a list, or a ``(1, length)`` tensor with ``return_tensors="pt"``)."""
        if not isinstance(text, str):
            raise TokenizerError(
                f"encode takes one string, got {_describe(text)}", hint="call the tokenizer itself for a batch"
            )
        return self(
            text,
            text_pair,
            add_special_tokens=add_special_tokens,
            padding=padding,
            truncation=truncation,
            max_length=max_length,
            return_tensors=return_tensors,
        )["input_ids"]

    def _encode(self, inputs: list[Any], add_special_tokens: bool) -> list[Any]:
        if not inputs:
            return []
        try:
            return self._backend.encode_batch(inputs, add_special_tokens=add_special_tokens)
        except Exception as exc:  # the Rust side raises plain Exception
            raise TokenizerError(
                f"tokenization failed: {exc}",
                hint="check truncation settings (max_length vs. special tokens, only_second without a pair)",
            ) from exc

    def _strategies(
        self, padding: bool | str, truncation: bool | str | None, max_length: int | None, pad_to_multiple_of: int | None
    ) -> tuple[str | None, str | None, int | None]:
        if max_length is not None and (not isinstance(max_length, int) or max_length < 0):
            raise TokenizerError(f"max_length must be a non-negative integer, got {max_length!r}")
        if max_length is not None and padding is False and truncation is None:
            truncation = "longest_first"
        if padding is True:
            pad = "longest"
        elif padding is False or padding is None:
            pad = None
        elif isinstance(padding, str) and padding in _PADDING:
            pad = _PADDING[padding]
        else:
            raise TokenizerError(
                f"padding={padding!r} is not understood", hint='use False, True / "longest", or "max_length"'
            )
        if truncation is True:
            truncate = "longest_first"
        elif truncation is False or truncation is None or truncation == "do_not_truncate":
            truncate = None
        elif isinstance(truncation, str) and truncation in _TRUNCATION:
            truncate = truncation
        else:
            raise TokenizerError(
                f"truncation={truncation!r} is not understood",
                hint=f"use False, True, or one of {', '.join(_TRUNCATION)}",
            )
        if max_length is None:
            if pad == "max_length":
                if self.model_max_length > LARGE_INTEGER:
                    pad = None
                else:
                    max_length = self.model_max_length
            if truncate is not None:
                if self.model_max_length > LARGE_INTEGER:
                    truncate = None
                else:
                    max_length = self.model_max_length
        if pad is not None and (self.pad_token is None or self.pad_token_id is None):
            raise TokenizerError(
                "asked to pad but this tokenizer has no padding token",
                hint="set one the model knows, e.g. tokenizer.pad_token = tokenizer.eos_token, or pass "
                "pad_token=... to Tokenizer.from_directory",
            )
        if (
            truncate is not None
            and pad is not None
            and pad_to_multiple_of is not None
            and max_length is not None
            and max_length % pad_to_multiple_of
        ):
            raise TokenizerError(
                f"truncation length ({max_length}) is not a multiple of pad_to_multiple_of ({pad_to_multiple_of})",
                hint="make max_length a multiple of pad_to_multiple_of",
            )
        return pad, truncate, max_length

    def _warn_if_too_long(self, encodings: list[Any]) -> None:
        longest = max((len(e.ids) for e in encodings), default=0)
        if longest > self.model_max_length:
            warnings.warn(
                f"a sequence of {longest} tokens is longer than this model's maximum of {self.model_max_length}; "
                "running it through the model may fail. Pass truncation=True to cut it.",
                UserWarning,
                stacklevel=3,
            )

    # ---------------------------------------------------------------- decoding
    def decode(
        self, ids: Any, skip_special_tokens: bool = False, clean_up_tokenization_spaces: bool | None = None
    ) -> str | list[str]:
        """Ids (list, tensor, or a batch of them) back to text."""
        ids = _to_python(ids)
        if isinstance(ids, int):
            ids = [ids]
        if not isinstance(ids, list):
            raise TokenizerError(f"decode takes token ids, got {type(ids).__name__}")
        if ids and isinstance(ids[0], list):
            return self.batch_decode(ids, skip_special_tokens, clean_up_tokenization_spaces)
        try:
            text = self._backend.decode([int(i) for i in ids], skip_special_tokens=skip_special_tokens)
        except (TypeError, ValueError, OverflowError) as exc:
            raise TokenizerError(f"cannot decode {ids!r}: {exc}", hint="pass non-negative integer token ids") from exc
        cleanup = (
            self.clean_up_tokenization_spaces if clean_up_tokenization_spaces is None else clean_up_tokenization_spaces
        )
        if cleanup and type(self._backend.model).__name__ != "BPE":  # destructive for BPE, as transformers says
            text = _clean_up_tokenization(text)
        return text

    def batch_decode(
        self, sequences: Any, skip_special_tokens: bool = False, clean_up_tokenization_spaces: bool | None = None
    ) -> list[str]:
        """Decode each sequence of a batch."""
        sequences = _to_python(sequences)
        return [
            self.decode(  # type: ignore[misc]  # a row of ids decodes to one string
                list(seq) if not isinstance(seq, int) else [seq], skip_special_tokens, clean_up_tokenization_spaces
            )
            for seq in sequences
        ]

    # ------------------------------------------------------------------- chat
    def apply_chat_template(
        self,
        messages: Sequence[Mapping[str, Any]] | Sequence[Sequence[Mapping[str, Any]]],
        add_generation_prompt: bool = False,
        tokenize: bool = True,
        *,
        chat_template: str | None = None,
        tools: Sequence[Mapping[str, Any]] | None = None,
        documents: Sequence[Mapping[str, Any]] | None = None,
        return_dict: bool = True,
        return_tensors: str | None = None,
        padding: bool | str = False,
        truncation: bool = False,
        max_length: int | None = None,
        **template_kwargs: Any,
    ) -> Any:
        """Render a conversation (or a batch of them) with the checkpoint's chat template.

        As in transformers 5: returns the rendered string(s) with ``tokenize=False``;
        otherwise a :class:`BatchEncoding` (``return_dict=True``, the default) or just
        the ids. Special tokens come from the template, so none are added on encoding.
        Needs jinja2 (installed with torch).
        """
        template = self._pick_chat_template(chat_template, tools)
        if not messages:
            raise TokenizerError(
                "cannot apply a chat template to an empty conversation",
                hint='pass a list of {"role": ..., "content": ...} messages',
            )
        batched = isinstance(messages[0], (list, tuple))
        conversations: list[Any] = list(messages) if batched else [messages]
        for conversation in conversations:
            for message in conversation:
                if not isinstance(message, Mapping):
                    raise TokenizerError(
                        f"chat messages must be dicts, got {_describe(message)}",
                        hint='pass [{"role": "user", "content": "..."}, ...]',
                    )
        compiled = compile_chat_template(template)
        context = {**self.special_tokens_map, **template_kwargs}
        rendered = []
        for conversation in conversations:
            chat = [{k: v for k, v in message.items() if v is not None} for message in conversation]
            try:
                rendered.append(
                    compiled.render(
                        messages=plain_template_input(chat),
                        tools=plain_template_input(tools),
                        documents=plain_template_input(documents),
                        add_generation_prompt=add_generation_prompt,
                        **plain_template_input(context),
                    )
                )
            except TokenizerError as err:  # over its budget
                raise err.located(self.name_or_path or None) from None
            except Exception as exc:
                raise TokenizerError(
                    f"the chat template failed to render: {type(exc).__name__}: {exc}",
                    file=self.name_or_path or None,
                    hint="check the messages against what the template expects",
                ) from exc
        text = rendered if batched else rendered[0]
        if not tokenize:
            return text
        out = self(
            text,
            add_special_tokens=False,
            padding=padding,
            truncation=truncation,
            max_length=max_length,
            return_tensors=return_tensors,
        )
        return out if return_dict else out["input_ids"]

    def _pick_chat_template(self, name: str | None, tools: Any) -> str:
        templates = self.chat_template
        if isinstance(templates, dict):
            if name is not None and name in templates:
                return templates[name]
            if name is not None:
                return name  # a template string passed explicitly
            if tools is not None and "tool_use" in templates:
                return templates["tool_use"]
            if "default" in templates:
                return templates["default"]
            raise TokenizerError(
                f"this tokenizer has several chat templates and none is the default: {sorted(templates)}",
                hint="pass chat_template=<one of those names>",
            )
        if name is not None:
            return name
        if templates is None:
            raise TokenizerError(
                "this tokenizer has no chat template",
                file=self.name_or_path or None,
                hint="the checkpoint ships none (no chat_template in tokenizer_config.json, no chat_template.jinja); "
                "pass chat_template='...' or set tokenizer.chat_template",
            )
        return templates

    # ------------------------------------------------------------------- save
    def save(self, directory: str | os.PathLike[str]) -> list[Path]:
        """Write ``tokenizer.json``, ``tokenizer_config.json`` (and chat templates) into ``directory``.

        transformers' ``AutoTokenizer.from_pretrained`` reads the result. Returns the paths written.
        """
        target = Path(directory)
        try:
            target.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SaveError(f"cannot create the tokenizer directory: {exc}", file=target) from exc
        files: dict[Path, str] = {target / TOKENIZER_FILE: self._backend.to_str(pretty=True)}
        config = {
            key: value
            for key, value in self._config.items()
            if key not in _NOT_SAVED
            and key not in self._special
            and key not in SPECIAL_TOKEN_NAMES
            and not (key.endswith("_token") and isinstance(value, (str, dict)))
        }
        config.update(self.special_tokens_map)
        if self._extra:
            config["extra_special_tokens"] = self.extra_special_tokens
        config.update(
            backend="tokenizers",
            tokenizer_class=self._config.get("tokenizer_class") or "PreTrainedTokenizerFast",
            model_max_length=self.model_max_length,
            padding_side=self.padding_side,
            truncation_side=self.truncation_side,
            model_input_names=list(self.model_input_names),
            clean_up_tokenization_spaces=self.clean_up_tokenization_spaces,
        )
        templates = self.chat_template
        if isinstance(templates, str):
            files[target / CHAT_TEMPLATE_FILE] = templates
        elif isinstance(templates, dict):
            for name, template in templates.items():
                path = (
                    target / CHAT_TEMPLATE_FILE if name == "default" else target / CHAT_TEMPLATE_DIR / f"{name}.jinja"
                )
                files[path] = template
        files[target / CONFIG_FILE] = json.dumps(config, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
        for path, text in files.items():
            write_text(path, text)
        return list(files)

    def __repr__(self) -> str:
        return (
            f"Tokenizer(name_or_path={self.name_or_path!r}, model={type(self._backend.model).__name__}, "
            f"vocab_size={self.vocab_size}, len={len(self)}, padding_side={self.padding_side!r}, "
            f"special_tokens={self.special_tokens_map})"
        )

    # plain attributes with validation
    @property
    def padding_side(self) -> str:
        return self._padding_side

    @padding_side.setter
    def padding_side(self, value: str) -> None:
        self._padding_side = _check_side(value, "padding_side")

    @property
    def truncation_side(self) -> str:
        return self._truncation_side

    @truncation_side.setter
    def truncation_side(self, value: str) -> None:
        self._truncation_side = _check_side(value, "truncation_side")


# ---------------------------------------------------------------------- files
def _present(path: Path) -> bool:
    """Whether a checkpoint has an entry of this name (a FIFO or a directory too: reading it says what is wrong)."""
    return os.path.lexists(path)


def _read_json_object(path: Path) -> dict[str, Any]:
    """An untrusted tokenizer JSON file: kind, size (16 MiB) and nesting depth checked before parsing."""
    data: dict[str, Any] = read_json(path, error=TokenizerFileError)
    return data


def _check_tokenizer_file(path: Path) -> None:
    """A file the tokenizers library reads itself: a regular file of at most 512 MiB, checked first."""
    check_file(path, max_bytes=MAX_TOKENIZER_BYTES, error=TokenizerFileError, what=path.name)


def _load_backend(path: Path) -> Backend:
    _check_tokenizer_file(path)
    try:
        return Backend.from_file(str(path))
    except Exception as exc:  # the Rust side raises plain Exception
        _read_json_object(path)  # a precise JSON error (line, column) if that is the problem
        raise TokenizerFileError(
            f"is not a tokenizer the tokenizers library can read: {exc}",
            file=path,
            hint="re-save it with transformers' save_pretrained or a newer `tokenizers`",
        ) from exc


def _wordpiece_backend(vocab_path: Path, config: Mapping[str, Any], config_path: Path) -> Backend:
    """BERT's pipeline, as transformers' BertTokenizer builds it from vocab.txt."""
    _check_tokenizer_file(vocab_path)
    try:
        vocab = WordPiece.read_file(str(vocab_path))
    except Exception as exc:
        raise TokenizerFileError(
            f"cannot be read as a WordPiece vocabulary: {exc}",
            file=vocab_path,
            hint="vocab.txt must hold one UTF-8 token per line",
        ) from exc
    if not vocab:
        raise TokenizerFileError("is empty", file=vocab_path, hint="vocab.txt must hold one token per line")
    strip_accents = config.get("strip_accents")
    for key in ("do_lower_case", "tokenize_chinese_chars"):
        if not isinstance(config.get(key, True), bool):
            raise TokenizerFileError(f"{key} must be true or false, got {config[key]!r}", file=config_path)
    if strip_accents is not None and not isinstance(strip_accents, bool):
        raise TokenizerFileError(f"strip_accents must be true, false or null, got {strip_accents!r}", file=config_path)
    backend = Backend(WordPiece(vocab, unk_token=_token_content(config.get("unk_token") or "[UNK]")))
    backend.normalizer = normalizers.BertNormalizer(
        clean_text=True,
        handle_chinese_chars=config.get("tokenize_chinese_chars", True),
        strip_accents=strip_accents,
        lowercase=config.get("do_lower_case", True),
    )
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.decoder = decoders.WordPiece(prefix="##")
    return backend


def _byte_level_bpe_backend(vocab_path: Path, merges_path: Path, config: Mapping[str, Any]) -> Backend:
    """GPT-2's pipeline, as transformers' GPT2Tokenizer builds it from vocab.json + merges.txt."""
    _check_tokenizer_file(vocab_path)
    _check_tokenizer_file(merges_path)
    try:
        vocab, merges = BPE.read_file(str(vocab_path), str(merges_path))
    except Exception as exc:
        _read_json_object(vocab_path)  # a precise error if vocab.json is the problem
        raise TokenizerFileError(
            f"vocab.json / merges.txt cannot be read as a BPE vocabulary: {exc}",
            file=merges_path,
            hint="merges.txt must hold one 'left right' pair per line",
        ) from exc
    backend = Backend(
        BPE(
            vocab=vocab,
            merges=merges,
            dropout=None,
            continuing_subword_prefix="",
            end_of_word_suffix="",
            fuse_unk=False,
        )
    )
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=bool(config.get("add_prefix_space") or False))
    backend.decoder = decoders.ByteLevel()
    return backend


def _read_chat_templates(directory: Path, config: dict[str, Any], config_path: Path) -> str | dict[str, str] | None:
    """Template files win over tokenizer_config.json's ``chat_template`` (transformers' precedence)."""
    templates: dict[str, str] = {}
    files = [directory / CHAT_TEMPLATE_FILE] if _present(directory / CHAT_TEMPLATE_FILE) else []
    if (directory / CHAT_TEMPLATE_DIR).is_dir():
        files += sorted((directory / CHAT_TEMPLATE_DIR).glob("*.jinja"))[:MAX_TEMPLATES]
    for path in files:
        name = "default" if path.parent == directory else path.name.removesuffix(".jinja")
        templates[name] = read_text(
            path, max_bytes=MAX_TEMPLATE_BYTES, error=TokenizerFileError, what="a chat template"
        )
    if templates:
        return templates["default"] if list(templates) == ["default"] else templates
    value = config.get("chat_template")
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, list) and all(
        isinstance(t, dict) and isinstance(t.get("name"), str) and isinstance(t.get("template"), str) for t in value
    ):
        return {t["name"]: t["template"] for t in value}
    raise TokenizerFileError(
        f"chat_template must be a string or a list of {{name, template}} objects, found {_describe(value)}",
        file=config_path,
        hint="fix the chat_template entry or move the template into chat_template.jinja",
    )


def _declared_class(config: Mapping[str, Any], directory: Path) -> str | None:
    """The stock tokenizer class the checkpoint declares, else the one its config.json model_type implies.

    Only a name, used to look up defaults below; nothing is imported.
    """
    name = config.get("tokenizer_class")
    if isinstance(name, str) and name:
        return name.removesuffix("Fast")
    config_json = directory / "config.json"
    if config_json.is_file():
        try:
            model_type = read_json(config_json, error=TokenizerFileError).get("model_type")
        except TokenizerFileError:
            return None  # the model build reports a broken config.json; the tokenizer does not need it
        if isinstance(model_type, str):
            return classes.class_of_model_type(model_type)
    return None


def _apply_class_defaults(config: dict[str, Any], class_name: str | None) -> None:
    """Fill special tokens the config omits with the declared class's defaults (explicit nulls stay null)."""
    for name, value in classes.special_token_defaults(class_name).items():
        if value is not None:
            config.setdefault(name, value)


def _input_names(config: Mapping[str, Any], class_name: str | None, config_path: Path) -> tuple[str, ...]:
    names = config.get("model_input_names")
    if names is not None:
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise TokenizerFileError(f"model_input_names must be a list of strings, got {names!r}", file=config_path)
        return tuple(names)
    return _WITH_TOKEN_TYPES if classes.uses_token_types(class_name) else _WITHOUT_TOKEN_TYPES


def _side(config: Mapping[str, Any], key: str, default: str, config_path: Path) -> str:
    value = config.get(key) or default
    if value not in ("left", "right"):
        raise TokenizerFileError(f'{key} must be "left" or "right", got {value!r}', file=config_path)
    return value


def _max_length(config: Mapping[str, Any], config_path: Path) -> int:
    value = config.get("model_max_length", config.get("max_len"))
    if value is None:
        return VERY_LARGE_INTEGER
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise TokenizerFileError(f"model_max_length must be a positive integer, got {value!r}", file=config_path)
    return value


def _token_content(value: Any) -> str:
    if isinstance(value, dict):
        return str(value.get("content"))
    return value.content if isinstance(value, AddedToken) else str(value)


_ADDED_TOKEN_KEYS = ("single_word", "lstrip", "rstrip", "normalized", "special")


def _added_token(value: Any, where: str, config_path: Path, special: bool | None = None) -> str | AddedToken:
    """A special-token entry: a string, or an AddedToken dict (``{"__type": "AddedToken", "content": ...}``)."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        options = {key: bool(value[key]) for key in _ADDED_TOKEN_KEYS if key in value}
        if special is not None:
            options["special"] = special
        return AddedToken(value["content"], **options)
    raise TokenizerFileError(
        f"{where} must be a string or an AddedToken object with a 'content' string, found {_describe(value)}",
        file=config_path,
    )


def _special_tokens(config: Mapping[str, Any], config_path: Path) -> tuple[dict[str, Any], list[Any]]:
    special: dict[str, Any] = {}
    for key, value in config.items():
        if value is None:
            continue
        if key in SPECIAL_TOKEN_NAMES:
            # special_tokens_map.json entries count as special even when their dict says otherwise
            special[key] = _added_token(value, key, config_path, special=True if isinstance(value, dict) else None)
        elif key.endswith("_token") and (isinstance(value, str) or (isinstance(value, dict) and "content" in value)):
            special[key] = _added_token(value, key, config_path)
    ordered = {key: special[key] for key in SPECIAL_TOKEN_NAMES if key in special}
    ordered.update((key, value) for key, value in special.items() if key not in ordered)
    extra: list[Any] = []
    value = config.get("extra_special_tokens")
    if isinstance(value, dict):
        for key, token in value.items():
            ordered[key] = _added_token(token, f"extra_special_tokens.{key}", config_path)
    elif isinstance(value, list):
        for i, token in enumerate(value):
            token = _added_token(token, f"extra_special_tokens[{i}]", config_path)
            if str(token) not in [str(t) for t in extra]:
                extra.append(token)
    elif value is not None:
        raise TokenizerFileError(
            f"extra_special_tokens must be a list or an object, found {_describe(value)}", file=config_path
        )
    return ordered, extra


def _added_tokens_decoder(config: Mapping[str, Any], config_path: Path) -> list[AddedToken]:
    value = config.get("added_tokens_decoder") or {}
    if not isinstance(value, dict):
        raise TokenizerFileError(
            f"added_tokens_decoder must be an object of id -> token, found {_describe(value)}", file=config_path
        )
    tokens = []
    for index, token in value.items():
        try:
            position = int(index)
        except ValueError:
            raise TokenizerFileError(
                f"added_tokens_decoder key {index!r} is not a token id", file=config_path
            ) from None
        entry = _added_token(token, f"added_tokens_decoder[{index}]", config_path)
        tokens.append((position, entry if isinstance(entry, AddedToken) else AddedToken(entry)))
    return [token for _, token in sorted(tokens, key=lambda item: item[0])]


def _copy_added_token(token: AddedToken, special: bool | None = None) -> AddedToken:
    state = token.__getstate__()
    if special is not None:
        state["special"] = special
    return AddedToken(state.pop("content"), **{k: state[k] for k in _ADDED_TOKEN_KEYS if k in state})


def _warn_if_other_pipeline(class_name: str | None, known: frozenset[str], pipeline: str, path: Path) -> None:
    if class_name is not None and class_name not in known:
        warnings.warn(
            f"{path}: tokenizer_config.json declares {class_name}, but without tokenizer.json factory rebuilds the "
            f"standard {pipeline} pipeline from the vocabulary files, which may differ from {class_name}'s. "
            "Save the tokenizer once with transformers (save_pretrained) to get a tokenizer.json.",
            UserWarning,
            stacklevel=3,
        )


def _auto_map_message(config_path: Path, auto_map: Any) -> str:
    return (
        f"{config_path}: auto_map names custom tokenizer code ({json.dumps(auto_map)[:200]}); factory never imports "
        "code named by a checkpoint and loads the tokenizer from its files instead. To use custom tokenizer code, "
        "install it as a package and register it in YAML (a file in registry.d/ or a FACTORY_REGISTRY_PATH "
        "directory) under the architecture's `components: {tokenizer: yourpackage.module:YourTokenizer}`."
    )


def _no_tokenizer_files_message(directory: Path) -> str:
    present = sorted(p.name for p in directory.iterdir()) if directory.is_dir() else []
    return (
        "no tokenizer files: expected tokenizer.json, or vocab.txt (WordPiece), or vocab.json + merges.txt "
        f"(byte-level BPE); found {present or 'an empty directory'}"
    )


def _no_tokenizer_files_hint(directory: Path) -> str:
    if (directory / "tokenizer.model").is_file() or (directory / "spiece.model").is_file():
        return (
            "SentencePiece .model files are not read directly; convert once with transformers "
            "(AutoTokenizer.from_pretrained(dir).save_pretrained(dir)) to write tokenizer.json"
        )
    if (directory / "vocab.json").is_file():
        return "vocab.json needs its merges.txt next to it"
    return "point at the checkpoint directory that holds the tokenizer, or save one with transformers' save_pretrained"


# ---------------------------------------------------------------- encoding help
def _check_text(value: Any, name: str) -> bool:
    """True for a batch (list/tuple of str), False for one string; anything else is an error."""
    if isinstance(value, str):
        return False
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return True
    raise TokenizerError(
        f"{name} must be a string or a list of strings, got {_describe(value)}",
        hint="pretokenized input (lists of words) is not supported; join the words first",
    )


def _check_side(value: Any, name: str) -> str:
    if value not in ("left", "right"):
        raise TokenizerError(f'{name} must be "left" or "right", got {value!r}')
    return str(value)


def _describe(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        inner = f" of {type(value[0]).__name__}" if value else ""
        return f"{type(value).__name__}{inner} (length {len(value)})"
    return type(value).__name__


def _to_python(value: Any) -> Any:
    if hasattr(value, "tolist"):  # torch / numpy
        return value.tolist()
    if isinstance(value, tuple):
        return [_to_python(v) for v in value]
    if isinstance(value, list):
        return [_to_python(v) if isinstance(v, (list, tuple)) or hasattr(v, "tolist") else v for v in value]
    return value


def _as_tensor(key: str, value: list[Any]) -> Any:
    import torch

    try:
        return torch.tensor(value, dtype=torch.long)
    except (ValueError, TypeError) as exc:
        raise TokenizerError(
            f"cannot make a tensor of {key!r}: the sequences have different lengths",
            hint="pass padding=True (and truncation=True for long texts) with return_tensors='pt'",
        ) from exc


def clean_up_tokenization(text: str) -> str:
    """transformers' clean_up_tokenization: no space before punctuation and English contractions."""
    return _clean_up_tokenization(text)


def _clean_up_tokenization(text: str) -> str:
    for before, after in (
        (" .", "."),
        (" ?", "?"),
        (" !", "!"),
        (" ,", ","),
        (" ' ", "'"),
        (" n't", "n't"),
        (" 'm", "'m"),
        (" 's", "'s"),
        (" 've", "'ve"),
        (" 're", "'re"),
    ):
        text = text.replace(before, after)
    return text
