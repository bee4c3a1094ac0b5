"""Whisper and wav2vec2 feature extractors against transformers on the same audio."""

from __future__ import annotations

import json
import warnings

import pytest

torch = pytest.importorskip("torch")
np = pytest.importorskip("numpy")
pytest.importorskip("transformers")
from transformers import Wav2Vec2FeatureExtractor as RefWav2Vec2
from transformers import WhisperFeatureExtractor as RefWhisper
from transformers.audio_utils import mel_filter_bank as ref_mel_filter_bank

from factory.components.feature_extraction import (
    SamplingRateWarning,
    Wav2Vec2FeatureExtractor,
    WhisperFeatureExtractor,
    mel_filter_bank,
)
from factory.errors import PreprocessingError, PreprocessorFileError

TOL = 1e-4
RATE = 16000


def compare(ours, theirs):
    assert set(ours) == set(theirs)
    for key in theirs:
        a, b = ours[key], torch.as_tensor(np.asarray(theirs[key]))
        assert a.shape == b.shape and a.dtype == b.dtype, key
        assert (a.double() - b.double()).abs().max().item() <= TOL, key


def run_both(ours_cls, ref_cls, audio, init=None, **call):
    init = init or {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = ref_cls(**init)(audio, sampling_rate=RATE, return_tensors="pt", **call)
    ours = ours_cls(**init)(audio, sampling_rate=RATE, return_tensors="pt", **call)
    compare(ours, theirs)
    return ours


@pytest.mark.filterwarnings("ignore:At least one mel filter has all zero values")
@pytest.mark.parametrize("bins", [80, 128])
@pytest.mark.parametrize("rate", [16000, 8000])
def test_mel_filters_as_transformers_computes_them(bins, rate):
    ours = mel_filter_bank(201, bins, 0.0, 8000.0, rate)
    theirs = ref_mel_filter_bank(201, bins, 0.0, 8000.0, rate, norm="slaney", mel_scale="slaney")
    assert ours.dtype == torch.float64 and ours.shape == theirs.shape
    assert np.abs(ours.numpy() - theirs).max() < 1e-8
    assert np.array_equal(ours.float().numpy(), theirs.astype(np.float32))


@pytest.mark.parametrize(
    "pick",
    [
        lambda a: a[0],  # one second
        lambda a: a,  # a batch of three lengths
        lambda a: [x.astype(np.float64) for x in a],
        lambda a: a[2].tolist(),  # a list of floats
        lambda a: [x.tolist() for x in a[:2]],
        lambda a: np.stack([a[0], a[0]]),  # a 2-d batch
        lambda a: np.concatenate([a[1]] * 25),  # 36.6 s: truncated to 30 s
        lambda a: np.zeros(480000, dtype=np.float32),  # exactly 30 s of silence
    ],
    ids=["1s", "batch", "float64", "list", "lists", "2d", "long", "silence-30s"],
)
def test_whisper_inputs(pick, audio):
    out = run_both(WhisperFeatureExtractor, RefWhisper, pick(audio))
    assert out["input_features"].shape[1:] == (80, 3000)


@pytest.mark.parametrize(
    "call",
    [
        {"return_attention_mask": True},
        {"do_normalize": True},
        {"padding": "longest"},
        {"padding": "longest", "return_attention_mask": True, "pad_to_multiple_of": 1600},
        {"padding": "max_length", "max_length": 20000},
        {"truncation": False, "padding": "longest"},
    ],
)
def test_whisper_options(call, audio):
    run_both(WhisperFeatureExtractor, RefWhisper, audio, **call)


def test_whisper_settings_and_torch_input(audio):
    run_both(WhisperFeatureExtractor, RefWhisper, audio[:2], init={"feature_size": 128})
    run_both(WhisperFeatureExtractor, RefWhisper, audio[:2], init={"hop_length": 320, "n_fft": 800, "chunk_length": 10})
    ours = WhisperFeatureExtractor()(torch.from_numpy(audio[0]), sampling_rate=RATE, return_tensors="pt")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = RefWhisper()(audio[0], sampling_rate=RATE, return_tensors="pt")
    compare(ours, theirs)


def test_whisper_return_types(audio):
    extractor = WhisperFeatureExtractor()
    listed = extractor(audio, sampling_rate=RATE)["input_features"]
    assert isinstance(listed, list) and len(listed) == 3 and listed[0].shape == (80, 3000)
    assert isinstance(extractor(audio, sampling_rate=RATE, return_tensors="np")["input_features"], np.ndarray)
    with pytest.raises(PreprocessingError, match="return_tensors='tf'"):
        extractor(audio, sampling_rate=RATE, return_tensors="tf")


@pytest.mark.parametrize(
    "call",
    [
        {},
        {"padding": True},
        {"padding": True, "return_attention_mask": True},
        {"padding": "max_length", "max_length": 20000, "truncation": True, "return_attention_mask": True},
        {"padding": "longest", "pad_to_multiple_of": 1000},
    ],
)
@pytest.mark.parametrize("init", [{}, {"padding_side": "left", "return_attention_mask": True}, {"do_normalize": False}])
def test_wav2vec2(call, init, audio):
    batch = audio if call else audio[0]  # without padding a batch of different lengths is no tensor
    run_both(Wav2Vec2FeatureExtractor, RefWav2Vec2, batch, init=init, **call)


def test_wav2vec2_unpadded_batch_is_a_list(audio):
    out = Wav2Vec2FeatureExtractor()(audio, sampling_rate=RATE)
    assert [len(x) for x in out["input_values"]] == [16000, 23456, 5000]
    with pytest.raises(PreprocessingError, match="different lengths"):
        Wav2Vec2FeatureExtractor()(audio, sampling_rate=RATE, return_tensors="pt")


@pytest.mark.parametrize("cls", [WhisperFeatureExtractor, Wav2Vec2FeatureExtractor])
def test_wrong_sampling_rate_is_an_error(cls, audio):
    with pytest.raises(PreprocessingError, match="sampled at 44100 Hz.*expects 16000 Hz") as err:
        cls()(audio[0], sampling_rate=44100)
    assert "resample the audio to 16000 Hz" in err.value.hint
    with pytest.warns(SamplingRateWarning, match="pass sampling_rate=16000"):
        cls()(audio[0])


@pytest.mark.parametrize(
    "audio_in, message",
    [
        (np.zeros((2, 3, 100), dtype=np.float32), "only mono audio"),
        ([np.zeros((2, 100), dtype=np.float32)], "only mono audio"),
        ("speech.wav", "expected audio"),
        (np.float32(1.0), "expected audio"),
        ([[1.0, "x"]], "cannot read audio samples"),
        (np.zeros(10, dtype=np.complex64), "real numbers"),
    ],
)
def test_bad_audio(audio_in, message):
    with pytest.raises(PreprocessingError, match=message):
        Wav2Vec2FeatureExtractor()(audio_in, sampling_rate=RATE)


@pytest.mark.parametrize(
    "call, message",
    [
        ({"padding": "max_length"}, "needs max_length"),
        ({"truncation": True}, "needs max_length"),
        ({"padding": "sideways"}, "padding must be"),
        ({"padding": True, "pad_to_multiple_of": 0}, "positive int"),
    ],
)
def test_bad_padding(call, message, audio):
    with pytest.raises(PreprocessingError, match=message):
        Wav2Vec2FeatureExtractor()(audio, sampling_rate=RATE, **call)


def test_files_round_trip_with_transformers(tmp_path, audio):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        RefWhisper(feature_size=128, chunk_length=10).save_pretrained(tmp_path / "w")
        RefWav2Vec2(return_attention_mask=True, do_normalize=False).save_pretrained(tmp_path / "v")
        whisper = WhisperFeatureExtractor.from_directory(tmp_path / "w")
        wav2vec2 = Wav2Vec2FeatureExtractor.from_directory(tmp_path / "v")
        assert whisper.feature_size == 128 and whisper.n_samples == 160000 and whisper.nb_max_frames == 1000
        assert wav2vec2.return_attention_mask is True and wav2vec2.do_normalize is False
        whisper.save(tmp_path / "w2")
        wav2vec2.save(tmp_path / "v2")
        saved = json.loads((tmp_path / "w2" / "preprocessor_config.json").read_text())
        assert saved["feature_extractor_type"] == "WhisperFeatureExtractor" and saved["n_samples"] == 160000
        compare(
            whisper(audio, sampling_rate=RATE, return_tensors="pt"),
            RefWhisper.from_pretrained(tmp_path / "w2")(audio, sampling_rate=RATE, return_tensors="pt"),
        )
        compare(
            wav2vec2(audio, sampling_rate=RATE, padding=True, return_tensors="pt"),
            RefWav2Vec2.from_pretrained(tmp_path / "v2")(audio, sampling_rate=RATE, padding=True, return_tensors="pt"),
        )


def test_old_whisper_file_with_mel_filters(tmp_path, audio):
    """Files saved by transformers 4 carry the mel filters; they are recomputed, as transformers does."""
    data = WhisperFeatureExtractor().to_dict()
    data["mel_filters"] = [[0.0] * 80] * 201
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(data))
    loaded = WhisperFeatureExtractor.from_directory(tmp_path)
    assert "mel_filters" not in loaded.to_dict()
    assert torch.equal(loaded.mel_filters, WhisperFeatureExtractor().mel_filters)


@pytest.mark.parametrize(
    "data, message",
    [
        ({"sampling_rate": "16k"}, "sampling_rate must be a positive int"),
        ({"feature_size": 0}, "feature_size must be a positive int"),
        ({"padding_side": "middle"}, "padding_side must be"),
        ({"hop_length": 1.5}, "hop_length must be a positive int"),
        ({"dither": -1}, "dither must be"),
    ],
)
def test_bad_settings_in_the_file(tmp_path, data, message):
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(data))
    with pytest.raises(PreprocessorFileError, match=message) as err:
        WhisperFeatureExtractor.from_directory(tmp_path)
    assert err.value.file == str(tmp_path / "preprocessor_config.json")


def test_processor_config_section(tmp_path):
    section = {"feature_extractor_type": "Wav2Vec2FeatureExtractor", "sampling_rate": 8000}
    (tmp_path / "processor_config.json").write_text(json.dumps({"feature_extractor": section}))
    assert Wav2Vec2FeatureExtractor.from_directory(tmp_path).sampling_rate == 8000
