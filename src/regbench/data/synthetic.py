"""A generated SST-2-style sentiment set for the offline demo when no real GLUE copy is at hand.

It is *not* SST-2: short English reviews built from templates (sentiment adjective, optional
negation that flips the label, neutral filler), written in SST-2's official TSV layout
(``sentence<TAB>label`` with a header) so the real GLUE loader reads it unchanged.
Usage: ``python -m regbench.data.synthetic <out dir> [--train N] [--dev N] [--seed S]``.
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

from regbench.atomic import write_text_atomic

POSITIVE = "good great wonderful moving charming delightful brilliant funny touching superb".split()
NEGATIVE = "bad awful boring dull tedious clumsy terrible bland forgettable weak".split()
SUBJECTS = "the film|this movie|the plot|the acting|the script|the ending|the cast|the story".split("|")
FILLER = ["", "", " , all things considered", " in the end", " from start to finish", " for most of its length"]
ADVERBS = ["", "", "very ", "quite ", "really ", "surprisingly "]


def review(rng: random.Random) -> tuple[str, int]:
    """One templated review and its label (1 positive, 0 negative)."""
    positive = rng.random() < 0.5
    negated = rng.random() < 0.25
    adjective = rng.choice(POSITIVE if positive else NEGATIVE)
    verb = "is not" if negated else rng.choice(["is", "was", "feels"])
    text = f"{rng.choice(SUBJECTS)} {verb} {rng.choice(ADVERBS)}{adjective}{rng.choice(FILLER)} ."
    return text, int(positive != negated)


def write(out_dir: Path, n_train: int = 4000, n_dev: int = 872, seed: int = 0) -> Path:
    """Write ``train.tsv`` and ``dev.tsv`` in the SST-2 layout."""
    rng = random.Random(seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, n in (("train.tsv", n_train), ("dev.tsv", n_dev)):
        rows = [review(rng) for _ in range(n)]
        write_text_atomic(out_dir / name, "sentence\tlabel\n" + "".join(f"{t}\t{y}\n" for t, y in rows))
    return out_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--train", type=int, default=4000)
    parser.add_argument("--dev", type=int, default=872)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(write(args.out_dir, args.train, args.dev, args.seed))


if __name__ == "__main__":
    main()
