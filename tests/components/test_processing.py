"""CLIP, SigLIP, Whisper and wav2vec2 processors against transformers' processors on the same inputs."""

from __future__ import annotations

import json
import warnings

import pytest

torch = pytest.importorskip("torch")
np = pytest.importorskip("numpy")
Image = pytest.importorskip("PIL.Image")
pytest.importorskip("transformers")
from transformers import AutoProcessor
from transformers import CLIPProcessor as RefCLIPProcessor
from transformers import SiglipProcessor as RefSiglipProcessor
from transformers import Wav2Vec2Processor as RefWav2Vec2Processor
from transformers import WhisperProcessor as RefWhisperProcessor
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil
from transformers.models.siglip.image_processing_pil_siglip import SiglipImageProcessorPil

from factory.components.processing import CLIPProcessor, SiglipProcessor, Wav2Vec2Processor, WhisperProcessor
from factory.errors import PreprocessingError
from tests.components.conftest import make_clip_tokenizer

TOL = 1e-4
TEXTS = ["a photo of a cat", "ab dog"]


def compare(ours, theirs):
    assert set(ours) == set(theirs)
    for key in theirs:
        a, b = ours[key], torch.as_tensor(theirs[key])
        assert a.shape == b.shape, key
        assert (a.double() - b.double()).abs().max().item() <= TOL, key


@pytest.fixture(scope="module")
def images(rng):
    return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for h, w in [(100, 150), (333, 222)]]


@pytest.fixture(scope="module", params=["clip", "siglip"])
def image_text(request, tmp_path_factory):
    """(ours, transformers') from one directory transformers saved."""
    directory = tmp_path_factory.mktemp(request.param)
    ref_cls, image_cls, ours_cls = {
        "clip": (RefCLIPProcessor, CLIPImageProcessorPil, CLIPProcessor),
        "siglip": (RefSiglipProcessor, SiglipImageProcessorPil, SiglipProcessor),
    }[request.param]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tokenizer = make_clip_tokenizer(generic=request.param == "siglip")
        ref_cls(image_processor=image_cls(), tokenizer=tokenizer).save_pretrained(directory)
        reference = AutoProcessor.from_pretrained(directory)
    return ours_cls.from_directory(directory), reference, directory


@pytest.mark.parametrize(
    "call",
    [
        {"text": TEXTS, "images": "images", "padding": True},
        {"text": TEXTS[0]},
        {"images": "images"},
        {
            "text": TEXTS,
            "images": "images",
            "padding": "max_length",
            "max_length": 10,
            "truncation": True,
            "do_center_crop": False,
            "size": {"height": 64, "width": 64},
        },
    ],
)
def test_image_text_processors(image_text, images, call):
    ours, reference, _ = image_text
    call = {k: images if v == "images" else v for k, v in call.items()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = reference(**call, return_tensors="pt")
    compare(ours(**call, return_tensors="pt"), theirs)


def test_image_text_save_round_trip(image_text, images, tmp_path):
    ours, reference, _ = image_text
    written = {p.name for p in ours.save(tmp_path)}
    assert {"processor_config.json", "tokenizer.json", "tokenizer_config.json"} <= written
    config = json.loads((tmp_path / "processor_config.json").read_text())
    assert config["processor_class"] == ours.processor_class and "image_processor" in config
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        back = AutoProcessor.from_pretrained(tmp_path)
        assert type(back).__name__ == ours.processor_class
        compare(
            back(text=TEXTS, images=images, padding=True, return_tensors="pt"),
            reference(text=TEXTS, images=images, padding=True, return_tensors="pt"),
        )
    assert ours.model_input_names == ["input_ids", "attention_mask", "pixel_values"]
    assert ours.batch_decode([[0, 7, 1]], skip_special_tokens=True) == reference.batch_decode(
        [[0, 7, 1]], skip_special_tokens=True
    )


def test_image_text_errors(image_text, images):
    ours, _, _ = image_text
    with pytest.raises(PreprocessingError, match="needs text, images or both"):
        ours()
    with pytest.raises(PreprocessingError, match="unexpected keyword argument.*'paddding'"):
        ours(text=TEXTS, paddding=True)


@pytest.fixture(scope="module")
def whisper_pair(whisper_dir):
    return WhisperProcessor.from_directory(whisper_dir), RefWhisperProcessor.from_pretrained(whisper_dir)


@pytest.mark.parametrize(
    "call",
    [
        {"audio": True},
        {"audio": True, "text": ["the world", "the"], "padding": True},
        {"text": "the world"},
        {"audio": True, "return_attention_mask": True},
    ],
)
def test_whisper_processor(whisper_pair, audio, call):
    ours, reference = whisper_pair
    args = [audio] if call.pop("audio", False) else []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = reference(*args, sampling_rate=16000, return_tensors="pt", **call)
    compare(ours(*args, sampling_rate=16000, return_tensors="pt", **call), theirs)


def test_whisper_decoding_and_prompts(whisper_pair):
    ours, reference = whisper_pair
    labels = reference(text=["the world", "the"], padding=True, return_tensors="pt")["input_ids"]
    assert ours.batch_decode(labels, skip_special_tokens=True) == reference.batch_decode(
        labels, skip_special_tokens=True
    )
    assert ours.decode(labels[0]) == reference.decode(labels[0])
    assert ours.get_decoder_prompt_ids(language="english", task="transcribe") == reference.get_decoder_prompt_ids(
        language="english", task="transcribe"
    )


def test_whisper_wrong_sampling_rate(whisper_pair, audio):
    ours, _ = whisper_pair
    with pytest.raises(PreprocessingError, match="sampled at 8000 Hz"):
        ours(audio, sampling_rate=8000)


@pytest.fixture(scope="module")
def ctc_pair(ctc_dir):
    return Wav2Vec2Processor.from_directory(ctc_dir), RefWav2Vec2Processor.from_pretrained(ctc_dir)


def test_wav2vec2_processor(ctc_pair, audio, tmp_path):
    ours, reference = ctc_pair
    call = {"text": ["HELLO", "HE TOLD"], "padding": True, "sampling_rate": 16000, "return_tensors": "pt"}
    compare(ours(audio, **call), reference(audio, **call))
    compare(ours(text="HELLO WORLD", return_tensors="pt"), reference(text="HELLO WORLD", return_tensors="pt"))
    ids = [[9, 9, 0, 5, 10, 0, 10, 8, 4, 11, 8, 12, 10, 13]]
    assert ours.batch_decode(ids) == reference.batch_decode(ids) == ["HELLO WORLD"]
    ours.save(tmp_path)
    back = RefWav2Vec2Processor.from_pretrained(tmp_path)
    compare(back(audio, **call), reference(audio, **call))
    assert ours.model_input_names == ["input_ids", "attention_mask", "input_values"]
