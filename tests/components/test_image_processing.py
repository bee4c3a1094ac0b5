"""ViT, CLIP and SigLIP image processors against transformers' Pillow backend, on the same inputs."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings

import pytest

torch = pytest.importorskip("torch")
np = pytest.importorskip("numpy")
Image = pytest.importorskip("PIL.Image")
pytest.importorskip("transformers")
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil
from transformers.models.siglip.image_processing_pil_siglip import SiglipImageProcessorPil
from transformers.models.vit.image_processing_pil_vit import ViTImageProcessorPil

from factory.components.image_processing import (
    CLIPImageProcessor,
    SiglipImageProcessor,
    ViTImageProcessor,
    output_size,
)
from factory.errors import MissingDependencyError, PreprocessingError, PreprocessorFileError

TOL = 1e-4
FAMILIES = {
    "vit": (ViTImageProcessor, ViTImageProcessorPil),
    "clip": (CLIPImageProcessor, CLIPImageProcessorPil),
    "siglip": (SiglipImageProcessor, SiglipImageProcessorPil),
}


def pil(rng, height: int, width: int, mode: str = "RGB"):
    channels = {"RGB": 3, "RGBA": 4, "L": 1, "LA": 2}.get(mode, 3)
    shape = (height, width) if channels == 1 else (height, width, channels)
    image = Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8))
    return image.convert(mode) if mode not in ("RGB", "RGBA", "L", "LA") else image


def reference(ref_cls, images, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ref_cls(**kwargs)(images, return_tensors="pt")["pixel_values"]


def assert_close(ours, theirs):
    assert ours.shape == theirs.shape and ours.dtype == theirs.dtype
    assert (ours.double() - theirs.double()).abs().max().item() <= TOL


@pytest.fixture(scope="module")
def mixed(rng):
    """A batch of differently sized RGB images (portrait, landscape, square, tiny)."""
    return [pil(rng, h, w) for h, w in [(100, 150), (333, 222), (224, 224), (50, 31), (17, 400)]]


@pytest.mark.parametrize("family", FAMILIES)
def test_batch_of_differently_sized_images(family, mixed):
    ours, ref = FAMILIES[family]
    out = ours()(mixed, return_tensors="pt")
    assert set(out) == {"pixel_values"} and out.pixel_values.shape == (5, 3, 224, 224)
    assert_close(out["pixel_values"], reference(ref, mixed))


@pytest.mark.parametrize("family", ["clip", "siglip"])
@pytest.mark.parametrize("mode", ["L", "RGBA", "LA", "P", "CMYK", "1"])
def test_modes_converted_to_rgb(family, mode, rng):
    ours, ref = FAMILIES[family]
    images = [pil(rng, 90, 120, mode)]
    if mode == "RGBA":  # a partly transparent image is composited onto white
        images[0].putalpha(Image.fromarray(rng.integers(0, 256, (90, 120), dtype=np.uint8)))
    assert_close(ours()(images, return_tensors="pt")["pixel_values"], reference(ref, images))


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize(
    "make",
    [
        lambda rng: rng.integers(0, 256, (77, 99, 3), dtype=np.uint8),  # numpy, channels last
        lambda rng: rng.integers(0, 256, (3, 77, 99), dtype=np.uint8),  # numpy, channels first
        lambda rng: rng.random((64, 80, 3), dtype=np.float32),  # float in [0, 1]
        lambda rng: rng.integers(0, 256, (64, 80, 3)).astype(np.float64),  # whole numbers as floats
        lambda rng: torch.randint(0, 256, (3, 60, 70), dtype=torch.uint8),
        lambda rng: torch.rand(60, 70, 3),
        lambda rng: rng.integers(0, 256, (2, 40, 50, 3), dtype=np.uint8),  # a 4-d batch
        lambda rng: rng.integers(0, 256, (77, 99, 3), dtype=np.uint8)[::-1],  # negative strides
    ],
    ids=["np-hwc", "np-chw", "np-float01", "np-float-integral", "torch-chw", "torch-float", "np-4d", "np-flipped"],
)
def test_numpy_and_torch_inputs(family, make, rng):
    ours, ref = FAMILIES[family]
    image = make(rng)
    assert_close(ours()(image, return_tensors="pt")["pixel_values"], reference(ref, image))


@pytest.mark.parametrize("family", ["clip", "siglip"])
@pytest.mark.parametrize("channels", [1, 4])
def test_array_gray_and_rgba_converted(family, channels, rng):
    ours, ref = FAMILIES[family]
    image = rng.integers(0, 256, (40, 50, channels), dtype=np.uint8)
    assert_close(ours()(image, return_tensors="pt")["pixel_values"], reference(ref, image))


@pytest.mark.parametrize(
    "options",
    [
        {"resample": 0},
        {"resample": 1},
        {"resample": 4},
        {"resample": 5},
        {"size": {"shortest_edge": 96}, "crop_size": {"height": 80, "width": 64}},
        {"size": 64, "crop_size": 300},  # a crop larger than the image is zero-padded
        {"size": {"shortest_edge": 100, "longest_edge": 140}, "do_center_crop": False},
        {"size": {"max_height": 90, "max_width": 120}, "do_center_crop": False},
        {"do_rescale": False},
        {"do_normalize": False},
        {"do_resize": False, "crop_size": {"height": 32, "width": 40}},
        {"image_mean": 0.3, "image_std": 0.2},
    ],
)
def test_options(options, rng):
    images = [pil(rng, 120, 90), pil(rng, 240, 180)]  # one aspect ratio: one size also without a crop
    assert_close(
        CLIPImageProcessor(**options)(images, return_tensors="pt")["pixel_values"],
        reference(CLIPImageProcessorPil, images, **options),
    )


def test_padding_to_the_largest_image(rng):
    images = [pil(rng, 120, 90), pil(rng, 140, 200)]
    options = {"size": {"shortest_edge": 64}, "do_center_crop": False, "do_pad": True}
    assert_close(
        CLIPImageProcessor(**options)(images, return_tensors="pt")["pixel_values"],
        reference(CLIPImageProcessorPil, images, **options),
    )


def test_call_options_override_and_uneven_sizes_without_tensors(rng):
    images = [pil(rng, 120, 90), pil(rng, 140, 200)]
    processor = CLIPImageProcessor()
    out = processor(images, do_center_crop=False)["pixel_values"]
    assert isinstance(out, list) and [tuple(t.shape) for t in out] == [(3, 298, 224), (3, 224, 320)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = CLIPImageProcessorPil()(images, do_center_crop=False)["pixel_values"]
    for a, b in zip(out, theirs):
        assert np.abs(a.numpy() - b).max() <= TOL
    with pytest.raises(PreprocessingError, match="different sizes"):
        processor(images, do_center_crop=False, return_tensors="pt")
    assert processor.options["do_center_crop"] is True  # a call does not change the processor
    assert isinstance(processor(images[0], return_tensors="np")["pixel_values"], np.ndarray)


def test_output_size_follows_transformers():
    assert output_size(480, 640, {"shortest_edge": 224}) == (224, 298)
    assert output_size(640, 480, {"shortest_edge": 224}) == (298, 224)
    assert output_size(100, 200, {"max_height": 50, "max_width": 50}) == (25, 50)
    assert output_size(300, 400, {"height": 20, "width": 30}) == (20, 30)


@pytest.mark.parametrize("family", FAMILIES)
def test_from_directory_and_save_round_trip_with_transformers(family, tmp_path, mixed):
    ours, ref = FAMILIES[family]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref(size={"height": 96, "width": 112}, image_mean=[0.4, 0.5, 0.6]).save_pretrained(tmp_path / "theirs")
        loaded = ours.from_directory(tmp_path / "theirs")
        assert loaded.size == {"height": 96, "width": 112} and loaded.image_mean == (0.4, 0.5, 0.6)
        written = loaded.save(tmp_path / "ours")
        assert [p.name for p in written] == ["preprocessor_config.json"]
        data = json.loads(written[0].read_text())
        assert data["image_processor_type"] == ours.type_name
        theirs = ref.from_pretrained(tmp_path / "ours")
        assert_close(
            loaded(mixed, return_tensors="pt")["pixel_values"], theirs(mixed, return_tensors="pt")["pixel_values"]
        )


def test_legacy_feature_extractor_file(tmp_path, mixed):
    """A 2021 CLIP preprocessor_config.json: feature_extractor_type and int sizes."""
    legacy = {
        "crop_size": 224,
        "do_center_crop": True,
        "do_normalize": True,
        "do_resize": True,
        "feature_extractor_type": "CLIPFeatureExtractor",
        "image_mean": [0.48145466, 0.4578275, 0.40821073],
        "image_std": [0.26862954, 0.26130258, 0.27577711],
        "resample": 3,
        "size": 224,
        "processor_class": "CLIPProcessor",
    }
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(legacy))
    ours = CLIPImageProcessor.from_directory(tmp_path)
    assert ours.size == {"shortest_edge": 224} and ours.crop_size == {"height": 224, "width": 224}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = CLIPImageProcessorPil.from_pretrained(tmp_path)
    assert_close(ours(mixed, return_tensors="pt")["pixel_values"], theirs(mixed, return_tensors="pt")["pixel_values"])
    assert "processor_class" not in ours.to_dict() and "feature_extractor_type" not in ours.to_dict()


def test_vit_needs_rgb_images(rng):
    processor = ViTImageProcessor()
    with pytest.raises(PreprocessingError, match="1 channel.*image_mean has 3") as err:
        processor(pil(rng, 30, 30, "L"))
    assert "do_convert_rgb=True" in err.value.hint
    with pytest.raises(PreprocessingError, match="mode 'P' needs do_convert_rgb"):
        processor(pil(rng, 30, 30, "P"))
    assert processor(pil(rng, 30, 30, "L"), do_convert_rgb=True, return_tensors="pt")["pixel_values"].shape == (
        1,
        3,
        224,
        224,
    )


@pytest.mark.parametrize(
    "images, message",
    [
        ("photo.jpg", "expected a Pillow image"),
        ([], "expected a Pillow image"),
        ([1, 2], "expected a Pillow image"),
        (np.zeros((5, 6, 7, 8, 9), dtype=np.uint8), "an image has 2 or 3 dimensions"),
        (np.zeros((10, 10, 5), dtype=np.uint8), "cannot tell the channel dimension"),
        (np.full((3, 8, 8), 300.0), r"values in \[0, 255\]"),
        (np.full((3, 8, 8), -0.5), r"values in \[0, 1\]"),
        (np.zeros((3, 8, 8), dtype=bool), "dtype"),
    ],
)
def test_bad_images(images, message):
    with pytest.raises(PreprocessingError, match=message):
        CLIPImageProcessor()(images)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"resample": 9}, "resample must be one of"),
        ({"size": {"height": 0, "width": 3}}, "positive ints"),
        ({"size": {"longest_edge": 3}}, "key sets"),
        ({"do_resize": "yes"}, "true or false"),
        ({"image_std": [0.5, 0, 0.5]}, "must not contain 0"),
        ({"image_mean": "x"}, "number or a list"),
        ({"crop_sise": 3}, "no option 'crop_sise'"),
    ],
)
def test_bad_options(options, message):
    with pytest.raises(PreprocessingError, match=message):
        CLIPImageProcessor(**options)
    with pytest.raises(PreprocessingError, match=message):
        CLIPImageProcessor()(np.zeros((8, 8, 3), dtype=np.uint8), **options)


def test_bad_files_name_the_file(tmp_path):
    path = tmp_path / "preprocessor_config.json"
    with pytest.raises(PreprocessorFileError, match="no preprocessor_config.json"):
        ViTImageProcessor.from_directory(tmp_path)
    path.write_text("{not json")
    with pytest.raises(PreprocessorFileError, match="not valid JSON") as err:
        ViTImageProcessor.from_directory(tmp_path)
    assert err.value.file == str(path) and err.value.line == 1
    path.write_text("[1, 2]")
    with pytest.raises(PreprocessorFileError, match="must hold a JSON object"):
        ViTImageProcessor.from_directory(tmp_path)
    path.write_text(json.dumps({"resample": "bicubic"}))
    with pytest.raises(PreprocessorFileError, match="resample must be one of") as err:
        ViTImageProcessor.from_directory(tmp_path)
    assert err.value.file == str(path)
    path.write_text(json.dumps({"auto_map": {"AutoImageProcessor": "evil.Processor"}}))
    with pytest.warns(UserWarning, match="never imports code"):
        assert ViTImageProcessor.from_directory(tmp_path).size == {"height": 224, "width": 224}
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "preprocessor_config.json").mkdir()
    with pytest.raises(PreprocessorFileError, match="is a directory, not a regular file"):
        ViTImageProcessor.from_directory(tmp_path / "sub")


def test_processor_config_section_wins(tmp_path):
    (tmp_path / "preprocessor_config.json").write_text(json.dumps({"size": {"height": 10, "width": 10}}))
    (tmp_path / "processor_config.json").write_text(
        json.dumps({"image_processor": {"size": {"height": 20, "width": 30}}, "processor_class": "X"})
    )
    assert ViTImageProcessor.from_directory(tmp_path).size == {"height": 20, "width": 30}


def test_missing_pillow_is_a_missing_dependency_error():
    """Pillow blocked in a fresh process: importing works, building an image processor says what to install."""
    code = (
        "import sys; sys.modules['PIL'] = None; sys.modules['PIL.Image'] = None\n"
        "import factory\n"
        "from factory.components.image_processing import CLIPImageProcessor\n"
        "from factory.errors import MissingDependencyError\n"
        "try:\n"
        "    CLIPImageProcessor()\n"
        "except MissingDependencyError as err:\n"
        "    print('hint:', err.hint)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "hint: pip install 'factory-registry[vision]'" in out


def test_missing_pillow_in_process(monkeypatch):
    monkeypatch.setitem(sys.modules, "PIL", None)
    with pytest.raises(MissingDependencyError, match="needs Pillow") as err:
        SiglipImageProcessor()
    assert err.value.hint == "pip install 'factory-registry[vision]'"


def test_import_factory_imports_no_torch_pillow_or_numpy():
    code = "import sys, factory; print(sorted(m for m in ('torch', 'PIL', 'numpy') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
