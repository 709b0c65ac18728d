#!/usr/bin/python3
"""A bag-of-words baseline beside the results tables: what counting words gets on the
single-sentence tasks, without any transformer.

    words.py [--tasks sst2,cola] [--samples 10]

Multinomial naive Bayes over lower-cased unigrams and bigrams (add-one smoothing), trained on
the full training set and on 1,000 examples drawn without replacement (--samples draws, seeds
0..N-1; not the engine's own sample, which uses its own generator), scored on the dev set with
GLUE's metric. Prints one markdown table. Data, metrics and the table's number format: glue.py's.
Standard library only.
"""
import argparse
import math
import os
import random
import sys
from collections import Counter

from glue import DATA, TASKS as GLUE, fmt

# The single-sentence tasks' file layout: (text column, label column, has a header line).
LAYOUT = {"sst2": (0, 1, True), "cola": (3, 1, False)}


def fail(message):
    print(f"words.py: {message}", file=sys.stderr)
    sys.exit(2)


def read(task, split):
    text, label, header = LAYOUT[task]
    path = os.path.join(DATA, GLUE[task][0 if split == "train" else 1])
    rows = []
    try:
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if header and n == 1:
                    continue
                cols = line.rstrip("\n").split("\t")
                try:
                    rows.append((cols[text], int(cols[label])))
                except (IndexError, ValueError):
                    fail(f"{path} line {n}: expected the text in column {text + 1} and a 0/1 label in column {label + 1}")
    except OSError as e:
        fail(f"{path}: {e.strerror}")
    return rows


def features(text):
    w = text.lower().split()
    return w + [a + " " + b for a, b in zip(w, w[1:])]


def train(rows):
    """Per class: log prior, and log probability of each feature (add-one) with the unseen one's."""
    counts, docs = {}, Counter()
    for text, y in rows:
        counts.setdefault(y, Counter()).update(features(text))
        docs[y] += 1
    vocab = set().union(*counts.values())
    model = {}
    for y, c in counts.items():
        total = sum(c.values()) + len(vocab)
        model[y] = (math.log(docs[y] / len(rows)), {f: math.log((n + 1) / total) for f, n in c.items()}, math.log(1 / total))
    return model, vocab


def predict(model, vocab, text):
    fs = [f for f in features(text) if f in vocab]  # features never seen in training are ignored
    def score(y):
        prior, logp, unseen = model[y]
        return prior + sum(logp.get(f, unseen) for f in fs)
    return max(sorted(model), key=score)


def metric(name, gold, pred):
    if name == "accuracy":
        return sum(g == p for g, p in zip(gold, pred)) / len(gold)
    tp = sum(g == 1 and p == 1 for g, p in zip(gold, pred)); tn = sum(g == 0 and p == 0 for g, p in zip(gold, pred))
    fp = sum(g == 0 and p == 1 for g, p in zip(gold, pred)); fn = sum(g == 1 and p == 0 for g, p in zip(gold, pred))
    d = math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    return (tp * tn - fp * fn) / d if d else 0.0


def score(task, rows, dev):
    model, vocab = train(rows)
    return metric(GLUE[task][2], [y for _, y in dev], [predict(model, vocab, t) for t, _ in dev])


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", default="sst2,cola")
    p.add_argument("--samples", type=int, default=10)
    args = p.parse_args()
    tasks = args.tasks.split(",")
    for t in tasks:
        if t not in LAYOUT:
            fail(f"--tasks: unknown task '{t}' (known: {', '.join(LAYOUT)})")
    if args.samples < 1:
        fail(f"--samples: {args.samples}: at least 1")
    data = {t: (read(t, "train"), read(t, "dev")) for t in tasks}
    for t, (tr, _) in data.items():
        if len(tr) < 1000:
            fail(f"{os.path.join(DATA, GLUE[t][0])}: {len(tr)} training examples, fewer than the 1,000 to sample")
    print("| bag of words (naive Bayes, unigrams + bigrams) | training examples | " + " | ".join(GLUE[t][3] for t in tasks) + " |")
    print("|---|---:|" + "---:|" * len(tasks))
    scarce = [fmt([score(t, random.Random(s).sample(data[t][0], 1000), data[t][1]) for s in range(args.samples)]) for t in tasks]
    print(f"| {args.samples} samples of 1,000 | 1,000 | " + " | ".join(scarce) + " |")
    print("| the full training set | all | " + " | ".join(fmt([score(t, *data[t])]) for t in tasks) + " |")


if __name__ == "__main__":
    main()
