"""Image transforms on PIL images and CHW uint8 tensors (torchvision-compatible semantics).

Conventions: a torch tensor is (C, H, W) (uint8 0..255, or float after :class:`ToTensor`); a
numpy array given to :class:`ToTensor` is (H, W[, C]). Geometry follows torchvision: Resize
with an int scales the short side (long side truncated), bilinear with antialiasing (PIL's
default for downscaling); CenterCrop rounds the offset and zero-pads a too-small image;
RandomResizedCrop uses the same 10-attempt sampling and centre fallback.

Randomness: every random transform draws from a :class:`RandomState` (a seeded
numpy Generator), so a run is reproducible. Transforms of one pipeline should share one
RandomState (the dataset presets do). Inside a DataLoader worker the generator is reseeded with
``(seed, worker_info.seed)``: workers differ from each other and from epoch to epoch, and the
whole run still follows ``torch.manual_seed`` / the DataLoader's generator.
"""
from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from typing import Any, Union

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

Img = Union[Image.Image, torch.Tensor]
Size = Union[int, Sequence[int]]


class RandomState:
    """A seeded numpy Generator (PCG64) that reseeds itself per DataLoader worker.

    numpy rather than torch.Generator for the scalar draws: ~0.3 us instead of ~5 us each,
    which matters at one crop + one flip per CIFAR sample.
    """

    def __init__(self, seed: int = 0) -> None:
        self.seed = int(seed)
        self._gen: np.random.Generator | None = None
        self._owner: tuple[int, int | None] | None = None

    def generator(self) -> np.random.Generator:
        info = torch.utils.data.get_worker_info()
        owner = (os.getpid(), None if info is None else info.seed)
        if self._gen is None or owner != self._owner:
            entropy = [self.seed] if info is None else [self.seed, info.seed]
            self._gen = np.random.default_rng(entropy)
            self._owner = owner
        return self._gen

    def randint(self, low: int, high: int) -> int:
        """Uniform integer in [low, high)."""
        return min(low + int(self.generator().random() * (high - low)), high - 1)

    def uniform(self, low: float, high: float) -> float:
        return low + (high - low) * self.generator().random()

    def get_state(self) -> dict[str, Any]:
        """The main-process generator's state (JSON-able), for resumable training (edgecv.resume)."""
        return self.generator().bit_generator.state

    def set_state(self, state: dict[str, Any]) -> None:
        self.generator().bit_generator.state = state

    def __getstate__(self) -> dict[str, Any]:  # restart from the seed wherever it is unpickled
        return {"seed": self.seed, "_gen": None, "_owner": None}

    def __repr__(self) -> str:
        return f"RandomState(seed={self.seed})"


def _rng(rng: RandomState | int | None) -> RandomState:
    return rng if isinstance(rng, RandomState) else RandomState(0 if rng is None else rng)


def _pair(size: Size) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    h, w = size
    return int(h), int(w)


def image_hw(img: Img) -> tuple[int, int]:
    if isinstance(img, Image.Image):
        return img.height, img.width
    return int(img.shape[-2]), int(img.shape[-1])


def crop(img: Img, top: int, left: int, height: int, width: int) -> Img:
    """Crop a box; parts outside the image are zero (as torchvision's pad-then-crop)."""
    if isinstance(img, Image.Image):
        return img.crop((left, top, left + width, top + height))
    h, w = img.shape[-2:]
    if top >= 0 and left >= 0 and top + height <= h and left + width <= w:
        return img[..., top:top + height, left:left + width]
    # constant padding with negative amounts crops: pad and crop in one op
    return F.pad(img, (-left, left + width - w, -top, top + height - h))


_PIL_MODES = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "nearest": Image.NEAREST}


def resize(img: Img, size: tuple[int, int], interpolation: str = "bilinear") -> Img:
    """Antialiased resize to (height, width); ``interpolation`` bilinear (default), bicubic or nearest."""
    if interpolation not in _PIL_MODES:
        raise ValueError(f"interpolation must be one of {', '.join(_PIL_MODES)}, got {interpolation!r}")
    h, w = size
    if isinstance(img, Image.Image):
        return img.resize((w, h), _PIL_MODES[interpolation])
    x = img.unsqueeze(0) if img.dim() == 3 else img
    out = F.interpolate(x.float(), size=(h, w), mode=interpolation, align_corners=None if interpolation == "nearest"
                        else False, antialias=interpolation != "nearest")
    if img.dtype == torch.uint8:
        out = out.round_().clamp_(0, 255).to(torch.uint8)
    return out[0] if img.dim() == 3 else out


def hflip(img: Img) -> Img:
    if isinstance(img, Image.Image):
        return img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return img.flip(-1)


class Compose:
    def __init__(self, transforms: Sequence[Callable[[Any], Any]]) -> None:
        self.transforms = list(transforms)

    def __call__(self, img: Any) -> Any:
        for t in self.transforms:
            img = t(img)
        return img

    def __repr__(self) -> str:
        inner = "".join(f"\n    {t!r}," for t in self.transforms)
        return f"Compose([{inner}\n])"


class Resize:
    """Int: scale the short side to ``size`` (long side ``int(size * long / short)``); pair: (h, w)."""

    def __init__(self, size: Size, interpolation: str = "bilinear") -> None:
        self.size = size
        self.interpolation = interpolation

    def output_size(self, h: int, w: int) -> tuple[int, int]:
        if not isinstance(self.size, int):
            return _pair(self.size)
        if h <= w:
            return self.size, int(self.size * w / h)
        return int(self.size * h / w), self.size

    def __call__(self, img: Img) -> Img:
        out = self.output_size(*image_hw(img))
        return img if out == image_hw(img) else resize(img, out, self.interpolation)

    def __repr__(self) -> str:
        extra = "" if self.interpolation == "bilinear" else f", {self.interpolation!r}"
        return f"Resize({self.size}{extra})"


class CenterCrop:
    def __init__(self, size: Size) -> None:
        self.size = _pair(size)

    def __call__(self, img: Img) -> Img:
        (h, w), (th, tw) = image_hw(img), self.size
        return crop(img, int(round((h - th) / 2.0)), int(round((w - tw) / 2.0)), th, tw)

    def __repr__(self) -> str:
        return f"CenterCrop({self.size})"


class Pad:
    """Zero-pad ``padding`` pixels on every side."""

    def __init__(self, padding: int) -> None:
        self.padding = int(padding)

    def __call__(self, img: Img) -> Img:
        p, (h, w) = self.padding, image_hw(img)
        return crop(img, -p, -p, h + 2 * p, w + 2 * p)

    def __repr__(self) -> str:
        return f"Pad({self.padding})"


class RandomCrop:
    """Random ``size`` crop of the image zero-padded by ``padding`` on every side."""

    def __init__(self, size: Size, padding: int = 0, *, rng: RandomState | int | None = None
                 ) -> None:
        self.size, self.padding, self.rng = _pair(size), int(padding), _rng(rng)

    def __call__(self, img: Img) -> Img:
        (h, w), (th, tw), p = image_hw(img), self.size, self.padding
        if h + 2 * p < th or w + 2 * p < tw:
            raise ValueError(f"RandomCrop{self.size} is larger than the padded image {(h, w)}")
        top = self.rng.randint(0, h + 2 * p - th + 1) - p
        left = self.rng.randint(0, w + 2 * p - tw + 1) - p
        return crop(img, top, left, th, tw)

    def __repr__(self) -> str:
        return f"RandomCrop({self.size}, padding={self.padding})"


class RandomHorizontalFlip:
    def __init__(self, p: float = 0.5, *, rng: RandomState | int | None = None) -> None:
        self.p, self.rng = p, _rng(rng)

    def __call__(self, img: Img) -> Img:
        return hflip(img) if self.rng.uniform(0.0, 1.0) < self.p else img

    def __repr__(self) -> str:
        return f"RandomHorizontalFlip(p={self.p})"


class RandomResizedCrop:
    """Crop a random area fraction ``scale`` and aspect ``ratio``, resize to ``size``."""

    def __init__(self, size: Size, scale: tuple[float, float] = (0.08, 1.0),
                 ratio: tuple[float, float] = (3 / 4, 4 / 3), *,
                 rng: RandomState | int | None = None) -> None:
        self.size, self.scale, self.ratio, self.rng = _pair(size), scale, ratio, _rng(rng)

    def params(self, height: int, width: int) -> tuple[int, int, int, int]:
        area, log_r = height * width, (math.log(self.ratio[0]), math.log(self.ratio[1]))
        for _ in range(10):
            target = area * self.rng.uniform(*self.scale)
            aspect = math.exp(self.rng.uniform(*log_r))
            w = int(round(math.sqrt(target * aspect)))
            h = int(round(math.sqrt(target / aspect)))
            if 0 < w <= width and 0 < h <= height:
                return self.rng.randint(0, height - h + 1), self.rng.randint(0, width - w + 1), h, w
        in_ratio = width / height
        if in_ratio < min(self.ratio):
            w, h = width, int(round(width / min(self.ratio)))
        elif in_ratio > max(self.ratio):
            h, w = height, int(round(height * max(self.ratio)))
        else:
            w, h = width, height
        return (height - h) // 2, (width - w) // 2, h, w

    def __call__(self, img: Img) -> Img:
        top, left, h, w = self.params(*image_hw(img))
        if isinstance(img, Image.Image):  # crop and resize in one PIL call
            return img.resize((self.size[1], self.size[0]), Image.BILINEAR,
                              box=(left, top, left + w, top + h))
        return resize(crop(img, top, left, h, w), self.size)

    def __repr__(self) -> str:
        return f"RandomResizedCrop({self.size}, scale={self.scale}, ratio={self.ratio})"


def _numpy_ok(x: torch.Tensor) -> bool:
    return x.device.type == "cpu" and not x.requires_grad


class ToTensor:
    """PIL image / HWC uint8 numpy -> CHW float32 in [0, 1]; a CHW uint8 tensor is just scaled."""

    def __call__(self, img: Img | np.ndarray) -> torch.Tensor:
        if isinstance(img, Image.Image):
            img = np.asarray(img)
        if isinstance(img, np.ndarray):
            arr = img[:, :, None] if img.ndim == 2 else img
            return torch.from_numpy(_scaled(arr.transpose(2, 0, 1)))
        if img.dtype == torch.uint8:
            return torch.from_numpy(_scaled(img.numpy())) if _numpy_ok(img) else img.float() / 255
        return img.float()

    def __repr__(self) -> str:
        return "ToTensor()"


def _scaled(arr: np.ndarray) -> np.ndarray:
    out = arr.astype(np.float32, order="C")
    if arr.dtype == np.uint8:
        np.divide(out, np.float32(255.0), out=out)
    return out


class Normalize:
    """(x - mean) / std per channel, on a float CHW tensor (returns a new tensor).

    CPU arithmetic goes through numpy (single-threaded): per-sample ops on 224x224 images
    otherwise use torch's intra-op threads, which on a busy 2-core box made each op ~20x slower.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        if any(s == 0 for s in std):
            raise ValueError(f"std must be non-zero, got {tuple(std)}")
        self.mean, self.std = tuple(float(m) for m in mean), tuple(float(s) for s in std)
        self._m = np.array(self.mean, dtype=np.float32).reshape(-1, 1, 1)
        self._s = np.array(self.std, dtype=np.float32).reshape(-1, 1, 1)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.float32 and _numpy_ok(x):
            out = x.numpy() - self._m
            np.divide(out, self._s, out=out)
            return torch.from_numpy(out)
        m, s = torch.from_numpy(self._m).to(x), torch.from_numpy(self._s).to(x)
        return (x - m) / s

    def __repr__(self) -> str:
        return f"Normalize(mean={self.mean}, std={self.std})"
