"""Generated container names in Docker's ``adjective_surname`` style, so ``ps`` reads familiarly."""

from __future__ import annotations

import secrets

_LEFT = (
    "admiring", "bold", "brave", "calm", "clever", "eager", "elegant", "focused", "gallant", "happy",
    "jolly", "keen", "kind", "lucid", "modest", "nifty", "quirky", "serene", "sharp", "stoic",
    "sweet", "tender", "upbeat", "vibrant", "wizardly", "zealous",
)
_RIGHT = (
    "babbage", "bohr", "curie", "darwin", "dijkstra", "einstein", "euler", "fermi", "galois", "hopper",
    "hypatia", "kepler", "knuth", "lamport", "lovelace", "meitner", "noether", "pascal", "ritchie",
    "shannon", "thompson", "turing", "wozniak", "yalow",
)


def generate(taken: set[str]) -> str:
    """A free name; a numeric suffix is added once the plain pairs start colliding."""
    for attempt in range(1000):
        name = f"{secrets.choice(_LEFT)}_{secrets.choice(_RIGHT)}"
        if attempt > 10:
            name += str(secrets.randbelow(10000))
        if name not in taken:
            return name
    raise RuntimeError("could not generate a free container name")
