"""A generated keyword-spotting stand-in: MFCC-like 49 x 10 "spectrograms" of 12 classes, the
input and label layout of MLPerf Tiny's keyword spotting (Speech Commands: 10 words, silence
and unknown, 49 frames x 10 MFCCs), made offline with a fixed seed. It is not speech: it has
the shape and the structure (a few syllables, each a coefficient profile over some frames, at
a random time and speed) that a DS-CNN must learn, so accuracies are not Speech Commands'.
"""

from __future__ import annotations

import numpy as np

FRAMES, COEFFS = 49, 10
WORDS = 10
#: the syllables every word is made of
SYLLABLES = 6
CLASSES = [f"word{i}" for i in range(WORDS)] + ["silence", "unknown"]


def _word(rng: np.random.Generator, syllables: np.ndarray) -> list[tuple[float, float, np.ndarray]]:
    """A word: 2-3 syllables drawn from a shared pool (so words share sounds and differ in their
    order and timing), each (onset frame, length in frames, coefficient profile)."""
    out, start = [], rng.uniform(4, 10)
    for _ in range(int(rng.integers(2, 4))):
        length = rng.uniform(6, 12)
        out.append((start, length, syllables[int(rng.integers(len(syllables)))]))
        start += length + rng.uniform(0, 4)
    return out


def _render(word, rng: np.random.Generator) -> np.ndarray:
    """One utterance of ``word``: shifted in time, stretched, louder or softer."""
    shift, stretch, gain = rng.uniform(-5, 5), rng.uniform(0.85, 1.15), rng.uniform(0.6, 1.4)
    t = np.arange(FRAMES, dtype=np.float64)[:, None]
    out = np.zeros((FRAMES, COEFFS))
    for onset, length, profile in word:
        centre, half = shift + stretch * (onset + length / 2), stretch * length / 2
        envelope = np.exp(-0.5 * ((t - centre) / max(half, 1.0)) ** 4)  # a flat-topped syllable
        out += envelope * profile * gain
    return out


def keywords(spec=None, n: int = 2400, seed: int = 20260104):
    """``n`` 49x10x1 MFCC-like samples, 12 classes in turn (10 words, silence, unknown).

    Each word is 2-3 of 6 shared syllables (10-coefficient profiles); every sample renders
    its word with a random time shift (+-5 frames), speed (+-15%) and gain, over a background
    of correlated noise. Silence is the background alone; unknown is one of 30 other words.
    """
    rng = np.random.default_rng(seed)
    syllables = rng.normal(0, 1.0, (SYLLABLES, COEFFS))
    words = [_word(rng, syllables) for _ in range(WORDS)]
    others = [_word(rng, syllables) for _ in range(30)]
    y = np.arange(n) % len(CLASSES)
    x = np.empty((n, FRAMES, COEFFS), dtype=np.float32)
    for i, label in enumerate(y):
        background = rng.normal(0, 0.7, (FRAMES, COEFFS))
        background = (background + np.roll(background, 1, axis=0)) / np.sqrt(2)  # frames overlap, as MFCC windows do
        if label < WORDS:
            x[i] = _render(words[label], rng) + background
        elif CLASSES[label] == "silence":
            x[i] = background
        else:
            x[i] = _render(others[int(rng.integers(len(others)))], rng) + background
    return {"x": x[..., None], "y": y.astype(np.int64)}, list(CLASSES)
