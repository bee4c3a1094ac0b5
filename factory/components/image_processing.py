"""The ``image-processor`` component: ViT, CLIP and SigLIP image processors.

They give what transformers' Pillow backend (``ViTImageProcessorPil``, ``CLIPImageProcessorPil``,
``SiglipImageProcessorPil``) gives on the same inputs: RGB conversion, resize with Pillow and the same
resampling filter, center crop, rescale, normalize, channels first, optional padding, one tensor for a
batch of differently sized images. Inputs are Pillow images, numpy arrays or torch tensors (channels
first or last, inferred as transformers infers them), alone or in a list.

``ViTImageProcessor.from_directory(path)`` reads ``preprocessor_config.json`` (or the ``image_processor``
section of ``processor_config.json``) as ``save_pretrained`` writes it; ``save(path)`` writes a file
transformers reads back. Pillow is an optional dependency: ``pip install 'factory-registry[vision]'``.
"""

from __future__ import annotations

import ctypes
import math
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar

import torch

from factory.components.batch_feature import BatchFeature, check_return_tensors
from factory.components.preprocessor import Preprocessor
from factory.errors import MissingDependencyError, PreprocessingError

__all__ = [
    "CLIPImageProcessor",
    "ImageProcessor",
    "SiglipImageProcessor",
    "ViTImageProcessor",
    "require_pillow",
]

#: Pillow's resampling filters by the numbers transformers stores (PILImageResampling).
RESAMPLING = {0: "NEAREST", 1: "LANCZOS", 2: "BILINEAR", 3: "BICUBIC", 4: "BOX", 5: "HAMMING"}
IMAGENET_STANDARD_MEAN = (0.5, 0.5, 0.5)
IMAGENET_STANDARD_STD = (0.5, 0.5, 0.5)
OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

#: The options of a preprocessor_config.json (and of a call) these processors understand.
OPTIONS = (
    "do_convert_rgb",
    "do_resize",
    "size",
    "default_to_square",
    "resample",
    "do_center_crop",
    "crop_size",
    "do_rescale",
    "rescale_factor",
    "do_normalize",
    "image_mean",
    "image_std",
    "do_pad",
    "pad_size",
)
#: Size dictionaries transformers accepts for resizing.
SIZE_KEYS = ({"height", "width"}, {"shortest_edge"}, {"shortest_edge", "longest_edge"}, {"max_height", "max_width"})
#: Pillow modes whose pixels are used as they are when do_convert_rgb is off.
DIRECT_MODES = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4}
MODE_OF_CHANNELS = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}
#: Batches of at least this many images are resized on a thread pool (Pillow releases the GIL).
THREADED_BATCH = 4


def require_pillow(what: str) -> Any:
    """``PIL.Image``, or a :class:`MissingDependencyError` saying how to install it."""
    try:
        from PIL import Image
    except ImportError:
        raise MissingDependencyError(
            f"{what} needs Pillow, which is not installed",
            hint="pip install 'factory-registry[vision]'",
            package="Pillow",
        ) from None
    return Image


class ImageProcessor(Preprocessor):
    """Resize, center crop, rescale and normalize images into ``pixel_values`` (batch, channels, height, width).

    The options are transformers' (``do_resize``, ``size``, ``resample``, ``do_center_crop``, ``crop_size``,
    ``do_rescale``, ``rescale_factor``, ``do_normalize``, ``image_mean``, ``image_std``, ``do_convert_rgb``,
    ``do_pad``, ``pad_size``); class attributes give each family's defaults, keyword arguments of the
    constructor and of a call override them.
    """

    type_name: ClassVar[str] = "ImageProcessor"
    type_key: ClassVar[str] = "image_processor_type"
    sections: ClassVar[tuple[str, ...]] = ("image_processor",)
    # feature_extractor_type: written when these were feature extractors; transformers drops it
    dropped_keys: ClassVar[tuple[str, ...]] = ("feature_extractor_type", "processor_class", "_processor_class")
    OPTIONS: ClassVar[tuple[str, ...]] = OPTIONS
    model_input_names: ClassVar[tuple[str, ...]] = ("pixel_values",)
    defaults: ClassVar[dict[str, Any]] = {
        "do_convert_rgb": None,
        "do_resize": True,
        "size": {"height": 224, "width": 224},
        "default_to_square": True,
        "resample": 2,
        "do_center_crop": None,
        "crop_size": None,
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        "image_mean": IMAGENET_STANDARD_MEAN,
        "image_std": IMAGENET_STANDARD_STD,
        "do_pad": None,
        "pad_size": None,
    }

    def __init__(self, *, name_or_path: str = "", extra: Mapping[str, Any] | None = None, **options: Any) -> None:
        self._image = require_pillow(type(self).__name__)
        super().__init__(name_or_path=name_or_path, extra=extra, **options)

    def standardize(self, options: dict[str, Any]) -> dict[str, Any]:
        return _standardize(options)

    @classmethod
    def adapt(cls, data: dict[str, Any]) -> dict[str, Any]:
        if data.get("use_square_size"):  # transformers' backwards compatibility of KOSMOS-2 for CLIP
            edge = cls.defaults["size"].get("shortest_edge") or cls.defaults["size"].get("height")
            data = {k: v for k, v in data.items() if k != "use_square_size"}
            data["size"] = {"height": edge, "width": edge}
        return data

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out.pop("default_to_square", None)  # a class setting transformers does not write
        return out

    # ---------------------------------------------------------------- calling
    def __call__(
        self,
        images: Any,
        *,
        return_tensors: str | None = None,
        input_data_format: str | None = None,
        **overrides: Any,
    ) -> BatchFeature:
        """Preprocess one image or a batch into ``pixel_values``.

        ``return_tensors="pt"``: one float tensor (batch, channels, height, width); ``"np"``: a numpy
        array; ``None``: a list of per-image tensors. ``input_data_format`` (``"channels_first"`` /
        ``"channels_last"``) says the layout of array inputs when inferring it is ambiguous.
        """
        check_return_tensors(return_tensors)
        options = self.call_options(overrides)
        if input_data_format not in (None, "channels_first", "channels_last"):
            raise PreprocessingError(
                f"input_data_format must be 'channels_first' or 'channels_last', found {input_data_format!r}"
            )
        items = _flat_images(images)
        work: Callable[[Any], torch.Tensor] = lambda image: self._resized(image, options, input_data_format)  # noqa: E731
        if len(items) >= THREADED_BATCH and (os.cpu_count() or 1) > 1:
            with ThreadPoolExecutor(max_workers=min(len(items), os.cpu_count() or 1, 8)) as pool:
                resized = list(pool.map(work, items))
        else:
            resized = [work(image) for image in items]
        pixel_values = _finish(resized, options)
        return BatchFeature({"pixel_values": _pack(pixel_values, return_tensors)})

    preprocess = __call__

    def _resized(self, image: Any, options: Mapping[str, Any], input_data_format: str | None) -> Any:
        """One image converted, resized and center-cropped: a Pillow image while it stays one, else a
        (height, width, channels) tensor of its own dtype."""
        if isinstance(image, self._image.Image):
            pil = _prepared_pil(image, bool(options["do_convert_rgb"]))
            if options["do_resize"]:
                h, w = output_size(pil.height, pil.width, options["size"])
                pil = pil.resize((w, h), resample=_filter(self._image, options["resample"]))
            if not options["do_center_crop"]:
                return pil
            crop_h, crop_w = options["crop_size"]["height"], options["crop_size"]["width"]
            top, left = (pil.height - crop_h) // 2, (pil.width - crop_w) // 2
            if top >= 0 and left >= 0:  # inside the image: Pillow crops as transformers' center_crop slices
                return pil.crop((left, top, left + crop_w, top + crop_h))
            array = _pil_to_tensor(pil)
        else:
            array = _prepared_array(image, bool(options["do_convert_rgb"]), input_data_format)
            if options["do_resize"]:
                array = _resize_array(self._image, array, options)
        if options["do_center_crop"]:
            array = center_crop(array, options["crop_size"]["height"], options["crop_size"]["width"])
        return array


class ViTImageProcessor(ImageProcessor):
    """ViT: resize to 224x224 (bilinear), rescale, normalize with mean = std = 0.5."""

    type_name = "ViTImageProcessor"


class CLIPImageProcessor(ImageProcessor):
    """CLIP: RGB, resize the shortest edge to 224 (bicubic), center crop 224x224, OpenAI CLIP mean and std."""

    type_name = "CLIPImageProcessor"
    defaults: ClassVar[dict[str, Any]] = {
        **ImageProcessor.defaults,
        "do_convert_rgb": True,
        "size": {"shortest_edge": 224},
        "default_to_square": False,
        "resample": 3,
        "do_center_crop": True,
        "crop_size": {"height": 224, "width": 224},
        "image_mean": OPENAI_CLIP_MEAN,
        "image_std": OPENAI_CLIP_STD,
    }


class SiglipImageProcessor(ImageProcessor):
    """SigLIP: RGB, resize to 224x224 (bicubic), rescale, normalize with mean = std = 0.5."""

    type_name = "SiglipImageProcessor"
    defaults: ClassVar[dict[str, Any]] = {
        **ImageProcessor.defaults,
        "do_convert_rgb": True,
        "default_to_square": False,
        "resample": 3,
    }


# --------------------------------------------------------------------- options
def _standardize(options: dict[str, Any]) -> dict[str, Any]:
    """Check the options and bring sizes and means into one form, as transformers' _standardize_kwargs."""
    out = dict(options)
    for key in ("do_convert_rgb", "do_resize", "do_center_crop", "do_rescale", "do_normalize", "do_pad"):
        if out.get(key) is not None and not isinstance(out[key], bool):
            raise PreprocessingError(f"{key} must be true or false, found {out[key]!r}")
    square = out.get("default_to_square")
    if square is not None and not isinstance(square, bool):
        raise PreprocessingError(f"default_to_square must be true or false, found {square!r}")
    out["size"] = _size_dict(out.get("size"), "size", bool(square))
    out["crop_size"] = _size_dict(out.get("crop_size"), "crop_size", True)
    out["pad_size"] = _size_dict(out.get("pad_size"), "pad_size", True)
    if out["do_resize"] and out["size"] is None:
        raise PreprocessingError("do_resize needs a size", hint='e.g. size={"height": 224, "width": 224}')
    if out["do_resize"] and set(out["size"]) not in SIZE_KEYS:
        raise PreprocessingError(
            f"size must have one of the key sets {[sorted(k) for k in SIZE_KEYS]} to resize, "
            f"found {sorted(out['size'])}",
        )
    if out["do_center_crop"] and (out["crop_size"] is None or set(out["crop_size"]) != {"height", "width"}):
        raise PreprocessingError(
            "do_center_crop needs crop_size with height and width", hint='e.g. crop_size={"height": 224, "width": 224}'
        )
    if out["do_pad"] and out["pad_size"] is not None and set(out["pad_size"]) != {"height", "width"}:
        raise PreprocessingError("pad_size must have height and width")
    resample = out.get("resample")
    if resample is None:
        out["resample"] = 2
    elif isinstance(resample, bool) or resample not in RESAMPLING:
        raise PreprocessingError(
            f"resample must be one of Pillow's filters {sorted(RESAMPLING)} "
            f"({', '.join(f'{k}: {v}' for k, v in RESAMPLING.items())}), found {resample!r}",
        )
    factor = out.get("rescale_factor")
    if out["do_rescale"] and (isinstance(factor, bool) or not isinstance(factor, (int, float))):
        raise PreprocessingError(f"rescale_factor must be a number, found {factor!r}")
    for key in ("image_mean", "image_std"):
        out[key] = _floats(out.get(key), key, required=bool(out["do_normalize"]))
    if out["do_normalize"] and any(s == 0 for s in out["image_std"]):
        raise PreprocessingError("image_std must not contain 0 (normalize divides by it)")
    return out


def _size_dict(value: Any, name: str, default_to_square: bool) -> dict[str, int] | None:
    """transformers' get_size_dict: an int is a square (or the shortest edge), a pair is (height, width)."""
    if value is None:
        return None
    if isinstance(value, bool):
        pass
    elif isinstance(value, int):
        return {"height": value, "width": value} if default_to_square else {"shortest_edge": value}
    elif isinstance(value, (list, tuple)) and len(value) == 2:
        value = {"height": value[0], "width": value[1]}
    if isinstance(value, Mapping):
        size = {str(k): v for k, v in value.items() if v is not None}
        if size and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size.values()):
            return size
    raise PreprocessingError(
        f"{name} must be an int, a (height, width) pair or a dict of positive ints, found {value!r}",
        hint=f'e.g. {name}={{"height": 224, "width": 224}}',
    )


def _floats(value: Any, name: str, *, required: bool) -> tuple[float, ...] | None:
    if value is None:
        if required:
            raise PreprocessingError(f"do_normalize needs {name}")
        return None
    values = value if isinstance(value, (list, tuple)) else [value]
    if not values or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in values):
        raise PreprocessingError(f"{name} must be a number or a list of numbers, found {value!r}")
    return tuple(float(v) for v in values)


def _filter(image_module: Any, resample: int) -> Any:
    return getattr(image_module.Resampling, RESAMPLING[resample])


# ---------------------------------------------------------------------- inputs
def _numpy_array_type() -> Any:
    numpy = sys.modules.get("numpy")  # a numpy array can only exist once numpy is imported
    return numpy.ndarray if numpy is not None else None


def _is_image(value: Any) -> bool:
    if isinstance(value, torch.Tensor):
        return True
    ndarray = _numpy_array_type()
    if ndarray is not None and isinstance(value, ndarray):
        return True
    pil = sys.modules.get("PIL.Image")
    return pil is not None and isinstance(value, pil.Image)


def _flat_images(images: Any) -> list[Any]:
    """One image or a (nested) batch as a flat list, as transformers' make_flat_list_of_images."""
    if _is_image(images):
        if getattr(images, "ndim", 3) == 4:
            return list(images)
        return [images]
    if isinstance(images, (list, tuple)) and images:
        if all(isinstance(item, (list, tuple)) for item in images):
            images = [image for group in images for image in group]
        flat: list[Any] = []
        for image in images:
            if not _is_image(image):
                break
            if getattr(image, "ndim", 3) == 4:
                flat.extend(list(image))
            else:
                flat.append(image)
        else:
            if flat:
                return flat
    raise PreprocessingError(
        f"expected a Pillow image, a numpy array or a torch tensor, or a list of them, found {_describe(images)}",
        hint="open files with PIL.Image.open(path) first",
    )


def _describe(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        inner = f" of {_describe(value[0])}" if value else " (empty)"
        return f"{type(value).__name__}{inner}"
    return type(value).__name__


def _prepared_pil(image: Any, convert_rgb: bool) -> Any:
    """A Pillow image as transformers' convert_to_rgb leaves it (transparency composited onto white)."""
    if convert_rgb:
        if "A" in image.getbands() or image.info.get("transparency") is not None:
            from PIL import Image

            rgba = image.convert("RGBA")
            background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            return Image.alpha_composite(background, rgba).convert("RGB")
        return image if image.mode == "RGB" else image.convert("RGB")
    if image.mode not in DIRECT_MODES:
        raise PreprocessingError(
            f"a Pillow image of mode {image.mode!r} needs do_convert_rgb=True (or convert it first)",
            hint='pass do_convert_rgb=True, or image.convert("RGB")',
        )
    return image


def _pil_to_tensor(image: Any) -> torch.Tensor:
    """A Pillow image (L, LA, RGB, RGBA) as a uint8 tensor (height, width, channels)."""
    channels = DIRECT_MODES[image.mode]
    data = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8)
    return data.view(image.height, image.width, channels)


def _as_tensor(image: Any) -> torch.Tensor:
    if isinstance(image, torch.Tensor):
        return image.detach().cpu()
    try:
        return torch.from_numpy(image)
    except (TypeError, ValueError):  # negative strides, or a dtype torch cannot share
        try:
            return torch.from_numpy(image.copy())
        except TypeError:
            raise PreprocessingError(f"cannot read an image array of dtype {image.dtype}") from None


def _prepared_array(image: Any, convert_rgb: bool, data_format: str | None) -> torch.Tensor:
    """An array image as (height, width, channels), RGB when asked; the channel dimension is found as
    transformers' process_image finds it (1, 3 or 4 channels, first wins when both could be)."""
    array = _as_tensor(image)
    if array.dtype == torch.bool or array.is_complex():
        raise PreprocessingError(f"cannot read an image of dtype {array.dtype}", hint="pass uint8 or float pixels")
    if array.ndim == 2:
        array = array.unsqueeze(0)
    elif array.ndim == 3:
        first = data_format == "channels_first" or (data_format is None and array.shape[0] in (1, 3, 4))
        last = data_format == "channels_last" or (data_format is None and not first and array.shape[-1] in (1, 3, 4))
        if last:
            array = array.permute(2, 0, 1)
        elif not first:
            raise PreprocessingError(
                f"cannot tell the channel dimension of an image of shape {tuple(array.shape)}",
                hint="images have 1, 3 or 4 channels first or last; pass input_data_format='channels_last' or "
                "'channels_first'",
            )
    else:
        raise PreprocessingError(f"an image has 2 or 3 dimensions, found shape {tuple(array.shape)}")
    array = array.permute(1, 2, 0)
    return _array_to_rgb(array) if convert_rgb else array


def _array_to_rgb(array: torch.Tensor) -> torch.Tensor:
    """transformers' convert_to_rgb for arrays (channels last): gray repeated, RGBA composited onto white."""
    channels = array.shape[-1]
    if channels == 1:
        return array.expand(-1, -1, 3)
    if channels != 4:
        return array
    if array.is_floating_point():
        if array.min() < 0 or array.max() > 1:
            raise PreprocessingError(
                f"an RGBA float image must hold values in [0, 1], found [{array.min().item()}, {array.max().item()}]"
            )
        alpha = array[..., 3:]
        return alpha * array[..., :3] + (1 - alpha) * 1.0
    alpha = array[..., 3:].double() / 255
    composite = alpha * array[..., :3].double() + (1 - alpha) * 255
    return torch.round(composite).to(array.dtype)


# ---------------------------------------------------------------- transforms
def output_size(height: int, width: int, size: Mapping[str, int]) -> tuple[int, int]:
    """The (height, width) transformers resizes an image of (height, width) to for ``size``."""
    if "shortest_edge" in size and "longest_edge" in size:
        return _size_with_aspect_ratio(height, width, size["shortest_edge"], size["longest_edge"])
    if "shortest_edge" in size:
        short, long = (width, height) if width <= height else (height, width)
        new_short, new_long = size["shortest_edge"], int(size["shortest_edge"] * long / short)
        return (new_long, new_short) if width <= height else (new_short, new_long)
    if "max_height" in size:
        scale = min(size["max_height"] / height, size["max_width"] / width)
        return int(height * scale), int(width * scale)
    return size["height"], size["width"]


def _size_with_aspect_ratio(height: int, width: int, size: int, max_size: int) -> tuple[int, int]:
    """transformers' get_size_with_aspect_ratio."""
    raw_size = None
    lo, hi = float(min(height, width)), float(max(height, width))
    if hi / lo * size > max_size:
        raw_size = max_size * lo / hi
        size = round(raw_size)
    if (height <= width and height == size) or (width <= height and width == size):
        return height, width
    if width < height:
        return (int(raw_size * height / width) if raw_size is not None else int(size * height / width)), size
    return size, (int(raw_size * width / height) if raw_size is not None else int(size * width / height))


def _resize_array(image_module: Any, array: torch.Tensor, options: Mapping[str, Any]) -> torch.Tensor:
    """Resize an array image (channels last) with Pillow, as transformers' resize does: through an 8-bit
    Pillow image, scaling [0, 1] floats to [0, 255] and back."""
    height, width, channels = array.shape
    new_height, new_width = output_size(height, width, options["size"])
    rescaled = False
    if array.dtype != torch.uint8:
        integral = torch.allclose(array.double(), array.to(torch.int64).double())
        if integral:
            if array.min() < 0 or array.max() > 255:
                raise PreprocessingError(
                    "an image to resize must hold values in [0, 255], "
                    f"found [{array.min().item()}, {array.max().item()}]"
                )
        elif array.min() >= 0 and array.max() <= 1:
            array = (array.double() * 255).float()
            rescaled = True
        else:
            raise PreprocessingError(
                f"a float image to resize must hold values in [0, 1] (or whole numbers in [0, 255]), found "
                f"[{array.min().item()}, {array.max().item()}]"
            )
        array = array.to(torch.uint8)
    if channels not in MODE_OF_CHANNELS:
        raise PreprocessingError(f"Pillow cannot resize an image with {channels} channels", hint="pass 1, 3 or 4")
    hwc = array.contiguous()
    pil = image_module.frombytes(
        MODE_OF_CHANNELS[channels], (width, height), ctypes.string_at(hwc.data_ptr(), hwc.numel())
    )
    resized = _pil_to_tensor(pil.resize((new_width, new_height), resample=_filter(image_module, options["resample"])))
    if rescaled:
        return (resized.double() * (1 / 255)).float()
    return resized


def center_crop(array: torch.Tensor, crop_height: int, crop_width: int) -> torch.Tensor:
    """transformers' center_crop of a (height, width, channels) image: the middle (crop_height, crop_width),
    zero-padded where the image is smaller."""
    height, width, channels = array.shape
    top, left = (height - crop_height) // 2, (width - crop_width) // 2
    if top >= 0 and left >= 0:
        return array[top : top + crop_height, left : left + crop_width]
    new_height, new_width = max(crop_height, height), max(crop_width, width)
    padded = torch.zeros((new_height, new_width, channels), dtype=array.dtype)
    top_pad, left_pad = math.ceil((new_height - height) / 2), math.ceil((new_width - width) / 2)
    padded[top_pad : top_pad + height, left_pad : left_pad + width] = array
    top, left = top + top_pad, left + left_pad
    return padded[max(0, top) : min(new_height, top + crop_height), max(0, left) : min(new_width, left + crop_width)]


def _finish(images: Sequence[torch.Tensor], options: Mapping[str, Any]) -> list[torch.Tensor] | torch.Tensor:
    """Rescale, normalize (batched where the images share a shape) and pad; channels first.

    One tensor (batch, channels, height, width) when every image ends the same size, else a list.
    """
    groups: dict[tuple[tuple[int, ...], torch.dtype], list[int]] = {}
    for i, image in enumerate(images):
        if isinstance(image, torch.Tensor):
            groups.setdefault((tuple(image.shape), image.dtype), []).append(i)
        else:  # a Pillow image (L, LA, RGB or RGBA)
            groups.setdefault(((image.height, image.width, DIRECT_MODES[image.mode]), torch.uint8), []).append(i)
    batches = [
        (indices, _rescale_normalize(_stack([images[i] for i in indices]), options)) for indices in groups.values()
    ]
    if len(batches) == 1 and not options["do_pad"]:
        return batches[0][1]
    out: list[torch.Tensor] = [batches[0][1][0]] * len(images)
    for indices, batch in batches:
        for i, image in zip(indices, batch):
            out[i] = image
    return _pad(out, options["pad_size"]) if options["do_pad"] else out


def _stack(images: list[Any]) -> torch.Tensor:
    """Images of one shape as a (batch, height, width, channels) tensor."""
    if all(not isinstance(image, torch.Tensor) for image in images):  # Pillow images: their bytes, back to back
        first = images[0]
        data = bytearray(b"".join(image.tobytes() for image in images))
        return torch.frombuffer(data, dtype=torch.uint8).view(len(images), first.height, first.width, -1)
    tensors = [image if isinstance(image, torch.Tensor) else _pil_to_tensor(image) for image in images]
    # torch.stack copies strided uint8 views (crops) slowly; a contiguous clone of each first is ~20x faster
    dense = [t if t.is_contiguous() else t.clone(memory_format=torch.contiguous_format) for t in tensors]
    return torch.stack(dense)


def _rescale_normalize(batch: torch.Tensor, options: Mapping[str, Any]) -> torch.Tensor:
    """(batch, height, width, channels) -> (batch, channels, height, width), rescaled and normalized in float32.

    transformers rescales in float64, rounds to float32, then subtracts the mean and divides by the std;
    here the three are one multiply-add, ``x * (factor / std) - mean / std`` in float32, which differs by a
    few float32 steps (~1e-6 at most), well inside the 1e-4 the processors promise.
    """
    channels_first = batch.permute(0, 3, 1, 2)
    rescale, normalize = options["do_rescale"], options["do_normalize"]
    if not (rescale or normalize):
        return channels_first.contiguous()
    dtype = torch.float32 if rescale or not batch.is_floating_point() else batch.dtype
    x = channels_first.to(dtype, memory_format=torch.contiguous_format)
    factor = float(options["rescale_factor"]) if rescale else 1.0
    if not normalize:
        return x.mul_(factor)
    channels = x.shape[1]
    mean, std = options["image_mean"], options["image_std"]
    for name, values in (("image_mean", mean), ("image_std", std)):
        if len(values) not in (1, channels):
            raise PreprocessingError(
                f"the images have {channels} channel(s) but {name} has {len(values)} values",
                hint="pass do_convert_rgb=True for grayscale or RGBA images, or a matching image_mean/image_std",
            )
    shape = (1, len(mean), 1, 1)
    scale = torch.tensor([factor / s for s in std], dtype=torch.float64).to(dtype).view(shape)
    shift = torch.tensor([-m / s for m, s in zip(mean, std)], dtype=torch.float64).to(dtype).view(shape)
    return torch.addcmul(shift, x, scale)


def _pad(images: list[torch.Tensor], pad_size: Mapping[str, int] | None) -> list[torch.Tensor]:
    """Pad bottom and right with zeros to ``pad_size`` (else the batch's largest height and width)."""
    height = pad_size["height"] if pad_size else max(image.shape[1] for image in images)
    width = pad_size["width"] if pad_size else max(image.shape[2] for image in images)
    out = []
    for image in images:
        if image.shape[1] > height or image.shape[2] > width:
            raise PreprocessingError(
                f"pad_size ({height}, {width}) is smaller than an image ({image.shape[1]}, {image.shape[2]})"
            )
        out.append(torch.nn.functional.pad(image, (0, width - image.shape[2], 0, height - image.shape[1])))
    return out


def _pack(images: list[torch.Tensor] | torch.Tensor, return_tensors: str | None) -> Any:
    if isinstance(images, torch.Tensor):
        if return_tensors is None:
            return list(images)
        return images.numpy() if return_tensors == "np" else images
    if return_tensors is None:
        return images
    shapes = {tuple(image.shape) for image in images}
    if len(shapes) > 1:
        raise PreprocessingError(
            f"the preprocessed images have different sizes {sorted(shapes)}, so they do not make one tensor",
            hint="pass return_tensors=None for a list, or a fixed size / center crop / do_pad=True",
        )
    batch = torch.stack(images)
    return batch.numpy() if return_tensors == "np" else batch
