"""The ``feature-extractor`` component: Whisper's log-mel spectrogram and wav2vec2's normalised waveform.

Both give what transformers' ``WhisperFeatureExtractor`` and ``Wav2Vec2FeatureExtractor`` give on the same
audio: padding and truncation (``padding=True | "longest" | "max_length" | False``, ``max_length``,
``truncation``, ``pad_to_multiple_of``, ``padding_side``), attention masks, zero-mean unit-variance
normalisation, and for Whisper the log-mel spectrogram computed with ``torch.stft`` and the mel filters
transformers computes (Slaney scale and norm). Audio is mono: a sequence of floats, a 1-D numpy array or
torch tensor, or a batch of them (a list, or a 2-D array/tensor). A ``sampling_rate`` that is not the
extractor's is an error; leaving it out warns, as transformers does.
"""

from __future__ import annotations

import math
import sys
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch

from factory.components.batch_feature import BatchFeature, check_return_tensors
from factory.components.preprocessor import Preprocessor
from factory.errors import PreprocessingError

__all__ = [
    "SamplingRateWarning",
    "SequenceFeatureExtractor",
    "Wav2Vec2FeatureExtractor",
    "WhisperFeatureExtractor",
    "mel_filter_bank",
]

#: transformers' padding strategies by the values ``padding`` may take.
PADDING: dict[bool | str, str] = {
    True: "longest",
    False: "do_not_pad",
    "longest": "longest",
    "max_length": "max_length",
    "do_not_pad": "do_not_pad",
}


class SamplingRateWarning(UserWarning):
    """Audio was passed without its sampling rate, which cannot then be checked."""


class SequenceFeatureExtractor(Preprocessor):
    """Padding, truncation, attention masks and the sampling-rate check shared by audio feature extractors."""

    type_key: ClassVar[str] = "feature_extractor_type"
    sections: ClassVar[tuple[str, ...]] = ("feature_extractor", "audio_processor")
    COMMON: ClassVar[tuple[str, ...]] = (
        "feature_size",
        "sampling_rate",
        "padding_value",
        "padding_side",
        "return_attention_mask",
    )

    def standardize(self, options: dict[str, Any]) -> dict[str, Any]:
        rate = options.get("sampling_rate")
        if isinstance(rate, bool) or not isinstance(rate, int) or rate <= 0:
            raise PreprocessingError(f"sampling_rate must be a positive int (Hz), found {rate!r}")
        size = options.get("feature_size")
        if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
            raise PreprocessingError(f"feature_size must be a positive int, found {size!r}")
        if options.get("padding_side") not in ("left", "right"):
            raise PreprocessingError(f"padding_side must be 'left' or 'right', found {options.get('padding_side')!r}")
        value = options.get("padding_value")
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise PreprocessingError(f"padding_value must be a number, found {value!r}")
        if not isinstance(options.get("return_attention_mask"), bool):
            raise PreprocessingError(
                f"return_attention_mask must be true or false, found {options.get('return_attention_mask')!r}"
            )
        return options

    def check_sampling_rate(self, sampling_rate: int | None, stacklevel: int = 3) -> None:
        """A different rate is an error (the model hears the audio too fast or too slow); none warns."""
        expected = self.options["sampling_rate"]
        if sampling_rate is None:
            warnings.warn(
                f"{type(self).__name__} got no sampling_rate: pass sampling_rate={expected} to have it checked "
                "(audio at another rate gives silently wrong features)",
                SamplingRateWarning,
                stacklevel=stacklevel,
            )
        elif sampling_rate != expected:
            raise PreprocessingError(
                f"audio sampled at {sampling_rate} Hz was given to {type(self).__name__}, which expects "
                f"{expected} Hz (the model was trained at that rate)",
                hint=f"resample the audio to {expected} Hz first (e.g. torchaudio.functional.resample or "
                "librosa.resample), then pass sampling_rate=" + str(expected),
            )

    def pad(
        self,
        sequences: Sequence[torch.Tensor],
        *,
        padding: bool | str,
        max_length: int | None,
        truncation: bool,
        pad_to_multiple_of: int | None,
        return_attention_mask: bool,
    ) -> tuple[torch.Tensor | list[torch.Tensor], torch.Tensor | list[torch.Tensor] | None]:
        """Truncate and pad 1-D float32 sequences as transformers' SequenceFeatureExtractor.pad does.

        Returns the sequences (one (batch, length) tensor when they end the same length, else a list) and,
        when asked, their int32 attention masks in the same form.
        """
        strategy = _padding_strategy(padding)
        if strategy == "max_length" and max_length is None:
            raise PreprocessingError("padding='max_length' needs max_length", hint="pass max_length=<samples>")
        if strategy != "do_not_pad" and self.options["padding_value"] is None:
            raise PreprocessingError("padding needs a padding_value", hint="e.g. padding_value=0.0")
        for name, value in (("max_length", max_length), ("pad_to_multiple_of", pad_to_multiple_of)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
                raise PreprocessingError(f"{name} must be a positive int, found {value!r}")
        if truncation:
            if max_length is None:
                raise PreprocessingError("truncation=True needs max_length", hint="pass max_length=<samples>")
            limit = _round_up(max_length, pad_to_multiple_of)
            sequences = [s[:limit] for s in sequences]
        lengths = [len(s) for s in sequences]
        if strategy == "longest":
            max_length, strategy = max(lengths), "max_length"
        target = _round_up(max_length, pad_to_multiple_of)
        if strategy == "do_not_pad" or target is None:
            target = max(lengths) if len(set(lengths)) == 1 else None
        else:
            target = max(target, *lengths)
        if target is None:  # different lengths, not padded
            masks = [torch.ones(n, dtype=torch.int32) for n in lengths] if return_attention_mask else None
            return list(sequences), masks
        # one concatenation of sequences and padding (a copy per row is slower, by far on a busy machine)
        left = self.options["padding_side"] == "left"
        fill = torch.full((target - min(lengths),), float(self.options["padding_value"] or 0.0))
        pieces = []
        for sequence, length in zip(sequences, lengths):
            pieces += [fill[: target - length], sequence] if left else [sequence, fill[: target - length]]
        batch = torch.cat(pieces).view(len(sequences), target)
        if not return_attention_mask:
            return batch, None
        ones, zeros = torch.ones(max(lengths), dtype=torch.int32), torch.zeros(target - min(lengths), dtype=torch.int32)
        parts = []
        for length in lengths:
            parts += [zeros[: target - length], ones[:length]] if left else [ones[:length], zeros[: target - length]]
        return batch, torch.cat(parts).view(len(sequences), target)

    def _batch(self, raw_speech: Any) -> list[torch.Tensor]:
        """The audio as a list of 1-D float32 tensors (one item when it was not a batch)."""
        if isinstance(raw_speech, torch.Tensor) or _is_ndarray(raw_speech):
            array = _tensor(raw_speech)
            if array.ndim > 2:
                raise PreprocessingError(
                    f"only mono audio is supported: expected 1 or 2 (batch, samples) dimensions, found shape "
                    f"{tuple(array.shape)}",
                    hint="mix the channels down first, e.g. audio.mean(0)",
                )
            if array.ndim == 0:
                raise PreprocessingError("expected audio samples, found a single number")
            return list(array.float()) if array.ndim == 2 else [array.float()]
        if isinstance(raw_speech, (list, tuple)) and raw_speech:
            if all(isinstance(x, (list, tuple, torch.Tensor)) or _is_ndarray(x) for x in raw_speech):
                batch = [_tensor(x).float() for x in raw_speech]
                for i, item in enumerate(batch):
                    if item.ndim != 1:
                        raise PreprocessingError(
                            f"only mono audio is supported: item {i} of the batch has shape {tuple(item.shape)}",
                            hint="each item of a batch is a 1-D sequence of samples",
                        )
                return batch
            return [_tensor(raw_speech).float()]
        raise PreprocessingError(
            "expected audio (a list of floats, a 1-D array or tensor, or a batch of them), "
            f"found {_describe(raw_speech)}"
        )

    def _padded(
        self, raw_speech: Any, sampling_rate: int | None, return_tensors: str | None, **pad: Any
    ) -> tuple[torch.Tensor | list[torch.Tensor], torch.Tensor | list[torch.Tensor] | None]:
        """A call's checks, then its audio truncated and padded (``return_attention_mask=None``: the setting's)."""
        check_return_tensors(return_tensors)
        self.check_sampling_rate(sampling_rate, stacklevel=4)
        masks = pad.pop("return_attention_mask")
        wanted = bool(self.options["return_attention_mask"] if masks is None else masks)
        return self.pad(self._batch(raw_speech), return_attention_mask=wanted, **pad)


class WhisperFeatureExtractor(SequenceFeatureExtractor):
    """Whisper's input: 80 (or 128) log-mel bins of 30-second chunks, ``input_features`` (batch, bins, 3000)."""

    type_name: ClassVar[str] = "WhisperFeatureExtractor"
    OPTIONS: ClassVar[tuple[str, ...]] = (
        *SequenceFeatureExtractor.COMMON,
        "hop_length",
        "chunk_length",
        "n_fft",
        "dither",
    )
    #: Written by transformers, recomputed from the other settings when read (as transformers does).
    derived: ClassVar[tuple[str, ...]] = ("n_samples", "nb_max_frames", "mel_filters")
    model_input_names: ClassVar[tuple[str, ...]] = ("input_features",)
    defaults: ClassVar[dict[str, Any]] = {
        "feature_size": 80,
        "sampling_rate": 16000,
        "hop_length": 160,
        "chunk_length": 30,
        "n_fft": 400,
        "padding_value": 0.0,
        "padding_side": "right",
        "dither": 0.0,
        "return_attention_mask": False,
    }

    def __init__(self, *, name_or_path: str = "", extra: Mapping[str, Any] | None = None, **options: Any) -> None:
        super().__init__(name_or_path=name_or_path, extra=extra, **options)
        n_fft = self.options["n_fft"]
        self.mel_filters = mel_filter_bank(
            num_frequency_bins=1 + n_fft // 2,
            num_mel_filters=self.options["feature_size"],
            min_frequency=0.0,
            max_frequency=8000.0,
            sampling_rate=self.options["sampling_rate"],
        ).float()
        self._window = torch.hann_window(n_fft)

    @classmethod
    def adapt(cls, data: dict[str, Any]) -> dict[str, Any]:
        return {key: value for key, value in data.items() if key not in cls.derived}

    def standardize(self, options: dict[str, Any]) -> dict[str, Any]:
        options = super().standardize(options)
        for key in ("hop_length", "chunk_length", "n_fft"):
            value = options.get(key)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise PreprocessingError(f"{key} must be a positive int, found {value!r}")
        dither = options.get("dither")
        if isinstance(dither, bool) or not isinstance(dither, (int, float)) or dither < 0:
            raise PreprocessingError(f"dither must be a number >= 0, found {dither!r}")
        return options

    @property
    def n_samples(self) -> int:
        """Samples in one chunk (``chunk_length`` seconds)."""
        return int(self.options["chunk_length"] * self.options["sampling_rate"])

    @property
    def nb_max_frames(self) -> int:
        return self.n_samples // int(self.options["hop_length"])

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out.update(n_samples=self.n_samples, nb_max_frames=self.nb_max_frames)
        return out

    def __call__(
        self,
        raw_speech: Any,
        *,
        truncation: bool = True,
        pad_to_multiple_of: int | None = None,
        return_tensors: str | None = None,
        return_attention_mask: bool | None = None,
        padding: bool | str = "max_length",
        max_length: int | None = None,
        sampling_rate: int | None = None,
        do_normalize: bool | None = None,
        device: str | torch.device = "cpu",
    ) -> BatchFeature:
        """Log-mel features of one clip or a batch, padded or truncated to ``chunk_length`` seconds.

        ``input_features``: (batch, feature_size, frames) float32; with ``return_attention_mask=True`` also
        ``attention_mask`` (batch, frames). ``device`` runs the STFT there (results come back on the CPU).
        """
        padded, masks = self._padded(
            raw_speech,
            sampling_rate,
            return_tensors,
            padding=padding,
            max_length=max_length or self.n_samples,
            truncation=truncation,
            pad_to_multiple_of=pad_to_multiple_of,
            return_attention_mask=return_attention_mask or do_normalize,
        )
        if do_normalize:
            padded = normalize_zero_mean_unit_var(padded, masks, float(self.options["padding_value"]))
        features = self.log_mel_spectrogram(_stack(padded, "input_features"), device=device)
        data: dict[str, Any] = {"input_features": features}
        if masks is not None:
            mask = _stack(masks, "attention masks")
            # as transformers: the mask is brought to frame resolution only when the call asks for it; a mask
            # made for do_normalize (or by the file's return_attention_mask) is returned per sample
            if return_attention_mask:
                hop = self.options["hop_length"]
                rescaled = mask[:, ::hop]
                mask = rescaled[:, :-1] if mask.shape[1] % hop != 0 else rescaled
            data["attention_mask"] = mask
        return BatchFeature({key: _pack(value, return_tensors) for key, value in data.items()})

    def log_mel_spectrogram(self, waveforms: torch.Tensor, device: str | torch.device = "cpu") -> torch.Tensor:
        """(batch, samples) float32 -> (batch, feature_size, samples // hop_length) log-mel features.

        transformers' computation: power spectrum of ``torch.stft`` (periodic Hann window, centred, reflect
        padding) without its last frame, mel filters, log10 clamped at 1e-10, floored 8 below each clip's
        maximum, then (x + 4) / 4. The power is taken as re² + im² (transformers: |z|², one rounding more).
        """
        waveforms = waveforms.to(device, torch.float32)
        if self.options["dither"]:
            waveforms = waveforms + self.options["dither"] * torch.randn_like(waveforms)
        window = self._window.to(waveforms.device)
        stft = torch.stft(
            waveforms, self.options["n_fft"], self.options["hop_length"], window=window, return_complex=True
        )
        power = stft.real.square().add_(stft.imag.square())[..., :-1]  # ~10x faster than view_as_real(...).sum(-1)
        log_spec = torch.matmul(self.mel_filters.to(waveforms.device).T, power)
        log_spec.clamp_(min=1e-10).log10_()
        floor = log_spec.amax(dim=(1, 2), keepdim=True).sub_(8.0)
        torch.maximum(log_spec, floor, out=log_spec)
        return log_spec.add_(4.0).div_(4.0).cpu()


class Wav2Vec2FeatureExtractor(SequenceFeatureExtractor):
    """wav2vec2 (HuBERT, WavLM) input: the raw waveform, zero-mean unit-variance normalised, ``input_values``."""

    type_name: ClassVar[str] = "Wav2Vec2FeatureExtractor"
    OPTIONS: ClassVar[tuple[str, ...]] = (*SequenceFeatureExtractor.COMMON, "do_normalize")
    model_input_names: ClassVar[tuple[str, ...]] = ("input_values", "attention_mask")
    defaults: ClassVar[dict[str, Any]] = {
        "feature_size": 1,
        "sampling_rate": 16000,
        "padding_value": 0.0,
        "padding_side": "right",
        "return_attention_mask": False,
        "do_normalize": True,
    }

    def standardize(self, options: dict[str, Any]) -> dict[str, Any]:
        options = super().standardize(options)
        if not isinstance(options.get("do_normalize"), bool):
            raise PreprocessingError(f"do_normalize must be true or false, found {options.get('do_normalize')!r}")
        return options

    def __call__(
        self,
        raw_speech: Any,
        *,
        padding: bool | str = False,
        max_length: int | None = None,
        truncation: bool = False,
        pad_to_multiple_of: int | None = None,
        return_attention_mask: bool | None = None,
        return_tensors: str | None = None,
        sampling_rate: int | None = None,
    ) -> BatchFeature:
        """``input_values`` (batch, samples) float32, and ``attention_mask`` (int32) when asked or configured.

        Normalisation uses only the real samples when the batch is padded and masks are returned; without
        masks it uses the padded sequence, as transformers does.
        """
        padded, masks = self._padded(
            raw_speech,
            sampling_rate,
            return_tensors,
            padding=padding,
            max_length=max_length,
            truncation=truncation,
            pad_to_multiple_of=pad_to_multiple_of,
            return_attention_mask=return_attention_mask,
        )
        if self.options["do_normalize"]:
            used = masks if _padding_strategy(padding) != "do_not_pad" else None
            padded = normalize_zero_mean_unit_var(padded, used, float(self.options["padding_value"]))
        data: dict[str, Any] = {"input_values": padded}
        if masks is not None:
            data["attention_mask"] = masks
        return BatchFeature({key: _pack(value, return_tensors, key) for key, value in data.items()})


# --------------------------------------------------------------------- helpers
def normalize_zero_mean_unit_var(
    values: torch.Tensor | Sequence[torch.Tensor],
    masks: torch.Tensor | Sequence[torch.Tensor] | None,
    padding_value: float,
) -> torch.Tensor | list[torch.Tensor]:
    """Each sequence minus its mean over its first ``mask.sum()`` samples (transformers' reading of the mask,
    also for left padding), over sqrt(variance + 1e-7); the samples after those set to ``padding_value``."""
    # two passes (mean, then the mean square of the centred values): torch.var_mean is ~10x slower on CPU
    if isinstance(values, torch.Tensor) and masks is None:  # the whole batch at once
        centred = values - values.mean(dim=1, keepdim=True)
        return centred.div_(torch.sqrt(centred.square().mean(dim=1, keepdim=True) + 1e-7))
    out = values.clone() if isinstance(values, torch.Tensor) else [v.clone() for v in values]
    for i, vector in enumerate(out):
        length = int(masks[i].sum()) if masks is not None else len(vector)
        vector.sub_(vector[:length].mean())
        vector.div_(torch.sqrt(vector[:length].square().mean() + 1e-7))
        if length < len(vector):
            vector[length:] = padding_value
    return out


def _padding_strategy(padding: bool | str) -> str:
    try:
        return PADDING[padding]
    except (KeyError, TypeError):
        raise PreprocessingError(
            f"padding must be True, False, 'longest', 'max_length' or 'do_not_pad', found {padding!r}"
        ) from None


def _round_up(length: int | None, multiple: int | None) -> int | None:
    if length is None or multiple is None or length % multiple == 0:
        return length
    return (length // multiple + 1) * multiple


def _is_ndarray(value: Any) -> bool:
    numpy = sys.modules.get("numpy")  # an array can only exist once numpy is imported
    return numpy is not None and isinstance(value, numpy.ndarray)


def _tensor(value: Any) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        tensor = value.detach().cpu()
    elif _is_ndarray(value):
        tensor = torch.from_numpy(value.copy() if any(s < 0 for s in value.strides) else value)
    else:
        try:
            tensor = torch.tensor(value, dtype=torch.float64)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise PreprocessingError(f"cannot read audio samples from {_describe(value)}: {exc}") from None
    if tensor.is_complex() or tensor.dtype == torch.bool:
        raise PreprocessingError(f"audio samples must be real numbers, found dtype {tensor.dtype}")
    return tensor


def _describe(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return f"{type(value).__name__} of {len(value)}" + (f" {type(value[0]).__name__}" if value else "")
    return type(value).__name__


def _stack(sequences: torch.Tensor | Sequence[torch.Tensor], name: str) -> torch.Tensor:
    if isinstance(sequences, torch.Tensor):
        return sequences
    lengths = {len(s) for s in sequences}
    if len(lengths) > 1:
        raise PreprocessingError(
            f"the {name} have different lengths {sorted(lengths)} and do not make one batch",
            hint="pad them: padding=True (or 'max_length' with max_length)",
        )
    return torch.stack(list(sequences))


def _pack(value: Any, return_tensors: str | None, name: str = "input_features") -> Any:
    if return_tensors is None:
        return list(value) if isinstance(value, torch.Tensor) else value
    batch = value if isinstance(value, torch.Tensor) else _stack(value, name)
    return batch.numpy() if return_tensors == "np" else batch


# ------------------------------------------------------------------ mel filters
def _hertz_to_mel(freq: torch.Tensor) -> torch.Tensor:
    """Slaney's mel scale (linear below 1 kHz, logarithmic above), in float64 as transformers computes it."""
    mels = 3.0 * freq / 200.0
    log = freq >= 1000.0
    return torch.where(log, 15.0 + torch.log(freq / 1000.0) * (27.0 / math.log(6.4)), mels)


def _mel_to_hertz(mels: torch.Tensor) -> torch.Tensor:
    freq = 200.0 * mels / 3.0
    log = mels >= 15.0
    return torch.where(log, 1000.0 * torch.exp((math.log(6.4) / 27.0) * (mels - 15.0)), freq)


def _linspace(start: float, stop: float, num: int) -> torch.Tensor:
    """numpy's linspace (start + i * step, the last point exactly ``stop``), which torch.linspace is not."""
    step = (stop - start) / (num - 1)
    values = torch.arange(num, dtype=torch.float64) * step + start
    values[-1] = stop
    return values


def mel_filter_bank(
    num_frequency_bins: int,
    num_mel_filters: int,
    min_frequency: float,
    max_frequency: float,
    sampling_rate: int,
) -> torch.Tensor:
    """(num_frequency_bins, num_mel_filters) triangular Slaney filters with Slaney norm, float64, as
    transformers' ``audio_utils.mel_filter_bank(norm="slaney", mel_scale="slaney")`` computes them."""
    if num_frequency_bins < 2 or min_frequency > max_frequency:
        raise PreprocessingError(
            f"cannot build mel filters for {num_frequency_bins} bins between {min_frequency} and {max_frequency} Hz"
        )
    bounds = _hertz_to_mel(torch.tensor([min_frequency, max_frequency], dtype=torch.float64))
    mel_freqs = _linspace(float(bounds[0]), float(bounds[1]), num_mel_filters + 2)
    filter_freqs = _mel_to_hertz(mel_freqs)
    fft_freqs = _linspace(0.0, float(sampling_rate // 2), num_frequency_bins)
    filter_diff = filter_freqs[1:] - filter_freqs[:-1]
    slopes = filter_freqs.unsqueeze(0) - fft_freqs.unsqueeze(1)
    down = -slopes[:, :-2] / filter_diff[:-1]
    up = slopes[:, 2:] / filter_diff[1:]
    filters = torch.clamp(torch.minimum(down, up), min=0.0)
    enorm = 2.0 / (filter_freqs[2 : num_mel_filters + 2] - filter_freqs[:num_mel_filters])
    return filters * enorm.unsqueeze(0)
