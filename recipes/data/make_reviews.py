"""Write reviews.csv: 1500 short product reviews from templates, labelled negative / neutral / positive.

Run from anywhere: ``python recipes/data/make_reviews.py`` (the same seed always writes the same
file). The labels are learnable but not trivial: reviews mix praise and complaints ("... but
overall ..." decides), negations flip a word ("not sturdy" is a complaint, "not bad" is mild
praise), neutral reviews share most words with the others, filler sentences carry no signal,
and 4% of the labels are flipped at random (a real label noise floor, so no model reaches
100%). The texts hold commas, double quotes, apostrophes, a few quoted line breaks, accents
emoji and typos, so the csv needs proper quoting (written by ``csv.writer``).
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

ROWS, SEED, NOISE = 1500, 7, 0.04
PRODUCTS = ["headphones", "kettle", "phone case", "backpack", "desk lamp", "running shoes", "coffee grinder",
            "e-reader", "blender", "tent", "café press", "keyboard"]
ASPECTS = ["battery", "sound", "build quality", "price", "delivery", "screen", "fit", "design", "customer service",
           "packaging", "manual", "zipper"]
POSITIVE = ["great", "excellent", "sturdy", "comfortable", "fantastic", "reliable", "superb", "lovely", "solid",
            "impressive"]
NEGATIVE = ["awful", "flimsy", "broken", "disappointing", "terrible", "useless", "cheap-feeling", "noisy", "faulty",
            "poor"]
NEUTRAL = ["okay", "average", "fine", "acceptable", "standard", "ordinary", "so-so", "decent enough"]
FILLER = ["I bought it for my sister.", "Arrived on a Tuesday.", "Ordered two, kept one.", "It comes in blue and grey.",
          'The box said "premium edition".', "My second one from this shop.", "Used it daily for a month.",
          "Gift for a friend’s birthday 🎁.", "Bought it on sale, naïvely or not.", "Compared it with the older model."]
OPENERS = {"positive": ["Love it!", "Très bien.", "Would buy again 👍.", "Five stars.", "Happy with it."],
           "negative": ["Never again.", "Returned it.", "Save your money.", "One star.", "What a letdown."],
           "neutral": ["It does the job.", "Three stars.", "Nothing special.", "Mixed feelings.", "It's a product."]}


def word(rng: random.Random, polarity: str) -> str:
    """An adjective of the polarity; one in five is a negated word of the other sign."""
    if polarity == "positive":
        return rng.choice(POSITIVE) if rng.random() < 0.8 else "not " + rng.choice(["bad", "flimsy", "noisy", "poor"])
    if polarity == "negative":
        return rng.choice(NEGATIVE) if rng.random() < 0.8 else "not " + rng.choice(["great", "sturdy", "reliable", "solid"])
    return rng.choice(NEUTRAL)


def clause(rng: random.Random, polarity: str) -> str:
    """One sentence about an aspect, of the given polarity."""
    template = rng.choice(["the {a} is {w}", "{a}: {w}", "honestly the {a} felt {w}", "I found the {a} {w}"])
    return template.format(a=rng.choice(ASPECTS), w=word(rng, polarity))


def review(rng: random.Random, label: str, product: str) -> str:
    other = {"positive": "negative", "negative": "positive", "neutral": rng.choice(["positive", "negative"])}[label]
    parts = []
    if rng.random() < 0.5:
        parts.append(rng.choice(OPENERS[label]))
    if label != "neutral" and rng.random() < 0.35:
        # a complaint then praise (or the reverse): the clause after "but" decides
        parts.append(f"{clause(rng, other).capitalize()}, but overall the {product} is {word(rng, label)}.")
    elif label == "neutral" and rng.random() < 0.4:
        parts.append(f"{clause(rng, 'positive').capitalize()}, and {clause(rng, 'negative')}.")
    else:
        for _ in range(rng.randint(1, 2)):
            parts.append(clause(rng, label).capitalize() + rng.choice([".", "!", "..."]))
    for _ in range(rng.randint(0, 2)):
        parts.insert(rng.randrange(len(parts) + 1), rng.choice(FILLER))
    text = ("\n" if rng.random() < 0.03 else " ").join(parts)
    if rng.random() < 0.15:  # a typo: a word the vocabulary has rarely or never seen
        words = text.split(" ")
        i = rng.randrange(len(words))
        if len(words[i]) > 3:
            j = rng.randrange(1, len(words[i]) - 1)
            words[i] = words[i][:j] + rng.choice("aeiourstn") + words[i][j + 1:]
        text = " ".join(words)
    return text


def main(path: Path | None = None) -> None:
    path = path or Path(__file__).with_name("reviews.csv")
    rng = random.Random(SEED)
    labels = ["negative", "neutral", "positive"]
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["review_id", "product", "text", "label"])
        for i in range(ROWS):
            label = rng.choice(labels)
            product = rng.choice(PRODUCTS)
            text = review(rng, label, product)
            if rng.random() < NOISE:
                label = rng.choice([other for other in labels if other != label])
            writer.writerow([f"r{i:04d}", product, text, label])
    print(f"wrote {ROWS} reviews to {path}")


if __name__ == "__main__":
    main()
