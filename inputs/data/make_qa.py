"""Writes inputs/data/qa.jsonl: 200 short questions with numeric answers for the `jsonl`
environment (works with env.jsonl.match = "exact" or "numeric"). Deterministic; rerun with
    python3 inputs/data/make_qa.py
"""
import json
import os
import random

rng = random.Random(20240501)
ANIMALS = [("cats", 4), ("dogs", 4), ("birds", 2), ("ducks", 2), ("spiders", 8), ("ants", 6)]


def question():
    kind = rng.randrange(6)
    a, b = rng.randint(2, 20), rng.randint(2, 20)
    if kind == 0:
        return f"What is {a} plus {b}?", a + b
    if kind == 1:
        a, b = max(a, b), min(a, b)
        return f"What is {a} minus {b}?", a - b
    if kind == 2:
        a, b = rng.randint(2, 9), rng.randint(2, 9)
        return f"What is {a} times {b}?", a * b
    if kind == 3:
        name, legs = rng.choice(ANIMALS)
        n = rng.randint(2, 9)
        return f"How many legs do {n} {name} have?", n * legs
    if kind == 4:
        return f"What number comes after {a * 3}?", a * 3 + 1
    return f"What is double {a}?", 2 * a


def main():
    seen, rows = set(), []
    while len(rows) < 200:
        q, a = question()
        if q in seen:
            continue
        seen.add(q)
        rows.append({"prompt": q + "\n", "answer": str(a)})
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "qa.jsonl")
    with open(path, "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")


if __name__ == "__main__":
    main()
