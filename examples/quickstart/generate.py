#!/usr/bin/env python3
"""Make the quickstart's datasets: travel questions -> queries in StayQL, a small made-up query language.

A travel agency wants its assistant to turn customer questions into queries over its hotel catalog.
The query language is the agency's own, so no base model knows it; that is what fine-tuning is for.

    SHOW hotels IN lisbon STARS >= 4 PRICE < 150 WITH pool wifi BY price UP TOP 5

Clauses come in this order and all but `SHOW hotels` are optional:
    IN <city>                     the city
    STARS >= N | STARS = N        hotel category (1-5)
    PRICE < N | PRICE <= N        price per night in euros ("under 150" is <, "at most 150" is <=)
    WITH <amenity> ...            required amenities, alphabetical
    BY price UP | BY price DOWN | BY stars DOWN    ordering
    TOP N                         how many results
Every token is separated by one space, so any tokenizer gives the text back unchanged.

Deterministic: the same seed gives byte-identical files. Usage:
    python examples/quickstart/generate.py [--out examples/quickstart/data] [--seed 7] [--check]
--check regenerates in memory and fails if the committed files differ.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path

SYSTEM_PROMPT = "Translate the request into StayQL."
SIZES = {"train": 1200, "validation": 100, "test": 100}

CITIES = [
    "lisbon",
    "porto",
    "madrid",
    "seville",
    "paris",
    "nice",
    "rome",
    "venice",
    "berlin",
    "vienna",
    "prague",
    "amsterdam",
    "athens",
    "dublin",
]
PRICES = [50, 60, 70, 80, 90, 100, 120, 150, 180, 200, 250, 300]
# amenity -> ways a customer says it
AMENITIES: dict[str, list[str]] = {
    "beach": ["beach access", "a beach nearby", "a beach"],
    "breakfast": ["breakfast included", "free breakfast", "breakfast"],
    "gym": ["a gym", "a fitness room", "a gym"],
    "parking": ["parking", "a car park", "free parking"],
    "pets": ["pets allowed", "dogs allowed", "pet friendly rooms"],
    "pool": ["a pool", "a swimming pool", "a pool"],
    "spa": ["a spa", "spa", "a wellness spa"],
    "wifi": ["wifi", "free wifi", "internet"],
}
SORTS = {
    ("price", "UP"): ["cheapest", "least expensive", "lowest priced"],
    ("price", "DOWN"): ["most expensive", "priciest", "most luxurious"],
    ("stars", "DOWN"): ["best rated", "highest rated", "top rated"],
}
NUMBER_WORDS = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five"}


@dataclass(frozen=True)
class Query:
    city: str | None = None
    stars: tuple[str, int] | None = None  # (">=" | "=", n)
    price: tuple[str, int] | None = None  # ("<" | "<=", n)
    amenities: tuple[str, ...] = ()
    sort: tuple[str, str] | None = None  # (field, UP | DOWN)
    top: int | None = None

    def render(self) -> str:
        out = ["SHOW", "hotels"]
        if self.city:
            out += ["IN", self.city]
        if self.stars:
            out += ["STARS", self.stars[0], str(self.stars[1])]
        if self.price:
            out += ["PRICE", self.price[0], str(self.price[1])]
        if self.amenities:
            out += ["WITH", *sorted(self.amenities)]
        if self.sort:
            out += ["BY", *self.sort]
        if self.top:
            out += ["TOP", str(self.top)]
        return " ".join(out)


def parse(text: str) -> Query:
    """StayQL -> Query; raises ValueError naming the token that is wrong (used to check the data)."""
    toks = text.split(" ")
    if toks[:2] != ["SHOW", "hotels"]:
        raise ValueError("a query starts with 'SHOW hotels'")
    i, q = 2, {}

    def take(n: int) -> list[str]:
        nonlocal i
        if i + n > len(toks):
            raise ValueError(f"clause {toks[i - 1]!r} is incomplete")
        part, i = toks[i : i + n], i + n
        return part

    order = ["IN", "STARS", "PRICE", "WITH", "BY", "TOP"]
    last = -1
    while i < len(toks):
        kw = toks[i]
        if kw not in order or order.index(kw) <= last:
            raise ValueError(f"unexpected token {kw!r} at position {i + 1}")
        last, i = order.index(kw), i + 1
        if kw == "IN":
            (city,) = take(1)
            if city not in CITIES:
                raise ValueError(f"unknown city {city!r}")
            q["city"] = city
        elif kw == "STARS":
            op, n = take(2)
            if op not in (">=", "=") or n not in {"1", "2", "3", "4", "5"}:
                raise ValueError(f"bad STARS clause {op} {n}")
            q["stars"] = (op, int(n))
        elif kw == "PRICE":
            op, n = take(2)
            if op not in ("<", "<=") or not n.isdigit():
                raise ValueError(f"bad PRICE clause {op} {n}")
            q["price"] = (op, int(n))
        elif kw == "WITH":
            names = []
            while i < len(toks) and toks[i] in AMENITIES:
                names.append(toks[i])
                i += 1
            if not names or names != sorted(set(names)):
                raise ValueError("WITH takes distinct amenities in alphabetical order")
            q["amenities"] = tuple(names)
        elif kw == "BY":
            key = tuple(take(2))
            if key not in SORTS:
                raise ValueError(f"bad BY clause {' '.join(key)}")
            q["sort"] = key
        else:
            (n,) = take(1)
            if not n.isdigit() or not 1 <= int(n) <= 10:
                raise ValueError(f"TOP takes 1-10, not {n}")
            q["top"] = int(n)
    return Query(**q)


# --- questions --------------------------------------------------------------------------------------------


@dataclass
class Phrasing:
    """The pieces of one question, assembled in a random order."""

    rng: random.Random
    parts: list[str] = field(default_factory=list)

    def pick(self, options: list[str]) -> str:
        return self.rng.choice(options)


def random_query(rng: random.Random) -> Query:
    city = rng.choice(CITIES) if rng.random() < 0.9 else None
    stars = None
    if rng.random() < 0.45:
        stars = (">=", rng.randint(2, 4)) if rng.random() < 0.7 else ("=", rng.randint(3, 5))
    price = (rng.choice(["<", "<="]), rng.choice(PRICES)) if rng.random() < 0.55 else None
    n_amen = rng.choices([0, 1, 2, 3], weights=[30, 35, 25, 10])[0]
    amenities = tuple(rng.sample(sorted(AMENITIES), n_amen))
    sort = rng.choice(list(SORTS)) if rng.random() < 0.4 else None
    top = None
    if sort and rng.random() < 0.7:
        top = rng.choice([1, 1, 3, 3, 5, 5, 10, 2, 4])
    elif rng.random() < 0.1:
        top = rng.choice([3, 5, 10])
    if not any([city, stars, price, amenities, sort]):
        city = rng.choice(CITIES)
    return Query(city, stars, price, amenities, sort, top)


def city_name(rng: random.Random, city: str) -> str:
    return city if rng.random() < 0.1 else city.capitalize()


def stars_phrase(rng: random.Random, op: str, n: int) -> str:
    if op == ">=":
        return rng.choice([f"at least {n} stars", f"{n} stars or more", f"{n} stars and up", f"minimum {n} stars"])
    return rng.choice([f"exactly {n} stars", f"{n} stars exactly", f"only {n} star hotels"])


def price_phrase(rng: random.Random, op: str, n: int) -> str:
    cur = rng.choice(["", " euros", " eur"])
    night = rng.choice(["", " a night", " per night"])
    if op == "<":
        word = rng.choice(["under", "below", "less than", "cheaper than"])
    else:
        word = rng.choice(["at most", "max", "up to", "no more than"])
    return f"{word} {n}{cur}{night}"


def amenity_phrase(rng: random.Random, names: tuple[str, ...]) -> str:
    said = [rng.choice(AMENITIES[a]) for a in rng.sample(names, len(names))]
    joined = said[0] if len(said) == 1 else ", ".join(said[:-1]) + " and " + said[-1]
    return rng.choice(["with ", "having ", "with "]) + joined


def head_phrase(rng: random.Random, q: Query) -> str:
    """The noun phrase: '3 cheapest hotels', 'the best rated hotel', 'hotels'."""
    noun = "hotel" if q.top == 1 else rng.choice(["hotels", "places to stay"])
    if q.sort:
        adj = rng.choice(SORTS[q.sort])
        if q.top == 1:
            return f"the {adj} {noun}"
        if q.top:
            count = str(q.top) if q.top > 5 or rng.random() < 0.6 else NUMBER_WORDS[q.top]
            return f"the {count} {adj} {noun}"
        return f"the {adj} {noun}"
    if q.top == 1:
        return rng.choice(["one hotel", "a single hotel"])
    if q.top:
        return f"{q.top} hotels"
    return rng.choice(["hotels", "a hotel", "places to stay", "somewhere to stay"])


def question(rng: random.Random, q: Query) -> str:
    head = head_phrase(rng, q)
    constraints = []
    if q.stars:
        constraints.append(stars_phrase(rng, *q.stars))
    if q.price:
        constraints.append(price_phrase(rng, *q.price))
    if q.amenities:
        constraints.append(amenity_phrase(rng, q.amenities))
    rng.shuffle(constraints)
    city = city_name(rng, q.city) if q.city else None

    style = rng.randrange(5)
    if style == 0 or not city:
        opener = rng.choice(["Find", "Show me", "List", "I need", "Looking for", "Can you find", "Search"])
        where = f" in {city}" if city else rng.choice(["", " anywhere"])
        text = f"{opener} {head}{where}"
    elif style == 1:
        text = f"{rng.choice(['Going to', 'Visiting', 'Trip to', 'Travelling to'])} {city}, {head}"
    elif style == 2:
        text = f"{city}: {head}"
    elif style == 3:
        text = f"{rng.choice(['Do you have', 'Got'])} {head} in {city}"
    else:
        text = f"{head.capitalize()} in {city}"
    text = text[0].upper() + text[1:]
    for i, c in enumerate(constraints):
        text += rng.choice([" ", ", ", " and "] if i else [" ", ", "]) + c
    return text + rng.choice(["", "?", ".", " please", "!"])


def example(q: Query, text: str) -> dict:
    return {
        "messages": [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": text},
            {"role": "assistant", "content": q.render()},
        ]
    }


def generate(seed: int) -> dict[str, list[dict]]:
    """train/validation/test; a question appears in one split only, test and validation never in train."""
    rng = random.Random(seed)
    seen: set[str] = set()
    out: dict[str, list[dict]] = {}
    for split in ("test", "validation", "train"):  # held-out splits first, so train is what is left
        rows: list[dict] = []
        while len(rows) < SIZES[split]:
            q = random_query(rng)
            text = question(rng, q)
            if text.lower() in seen:
                continue
            seen.add(text.lower())
            assert parse(q.render()) == Query(q.city, q.stars, q.price, tuple(sorted(q.amenities)), q.sort, q.top), (
                q.render()
            )
            rows.append(example(q, text))
        out[split] = rows
    return out


def dump(rows: list[dict]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "data")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--check", action="store_true", help="fail if the files in --out differ from what this makes")
    args = ap.parse_args(argv)
    splits = generate(args.seed)
    stale = []
    for split, rows in splits.items():
        path = args.out / f"{split}.jsonl"
        text = dump(rows)
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(str(path))
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"{path}: {len(rows)} examples")
    if stale:
        print("stale (run examples/quickstart/generate.py): " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
