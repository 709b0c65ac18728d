#!/usr/bin/python3
"""A bag-of-words baseline beside the results tables: what counting words gets on the
single-sentence tasks, without any transformer.

    words.py [--tasks sst2,cola] [--samples 10]

Multinomial naive Bayes over lower-cased unigrams and bigrams (add-one smoothing), trained on
the full training set and on 1,000 examples drawn without replacement (--samples draws, seeds
0..N-1; not the engine's own sample, which uses its own generator), scored on the dev set with
GLUE's metric. Prints one markdown table. Data: ENGINE_DATA or ../shared/data. Standard library only.
"""
import argparse
import math
import os
import random
import statistics
import sys
from collections import Counter

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.abspath(os.environ.get("ENGINE_DATA") or os.path.join(HERE, "..", "..", "..", "shared", "data"))

# task: (folder, text column, label column, has a header line, metric)
TASKS = {"sst2": ("glue/SST-2", 0, 1, True, "accuracy", "SST-2 acc"), "cola": ("glue/CoLA", 3, 1, False, "mcc", "CoLA MCC")}


def read(task, split):
    folder, text, label, header, _, _ = TASKS[task]
    path = os.path.join(DATA, folder, f"{split}.tsv")
    rows = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if header and n == 1:
                continue
            cols = line.rstrip("\n").split("\t")
            try:
                rows.append((cols[text], int(cols[label])))
            except (IndexError, ValueError):
                sys.exit(f"words.py: {path} line {n}: expected the text in column {text + 1} and a 0/1 label in column {label + 1}")
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
        model[y] = (math.log(docs[y] / len(rows)), {f: math.log((n + 1) / total) for f, n in c.items()}, math.log(1 / total), vocab)
    return model


def predict(model, text):
    fs = features(text)
    def score(y):
        prior, logp, unseen, vocab = model[y]
        return prior + sum(logp.get(f, unseen) for f in fs if f in vocab)  # features never seen in training are ignored
    return max(sorted(model), key=score)


def metric(name, gold, pred):
    if name == "accuracy":
        return sum(g == p for g, p in zip(gold, pred)) / len(gold)
    tp = sum(g == 1 and p == 1 for g, p in zip(gold, pred)); tn = sum(g == 0 and p == 0 for g, p in zip(gold, pred))
    fp = sum(g == 0 and p == 1 for g, p in zip(gold, pred)); fn = sum(g == 1 and p == 0 for g, p in zip(gold, pred))
    d = math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    return (tp * tn - fp * fn) / d if d else 0.0


def score(task, rows, dev):
    model = train(rows)
    return metric(TASKS[task][4], [y for _, y in dev], [predict(model, t) for t, _ in dev])


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", default="sst2,cola")
    p.add_argument("--samples", type=int, default=10)
    args = p.parse_args()
    tasks = args.tasks.split(",")
    for t in tasks:
        if t not in TASKS:
            sys.exit(f"words.py: --tasks: unknown task '{t}' (known: {', '.join(TASKS)})")
    print("| bag of words (naive Bayes, unigrams + bigrams) | training examples | " + " | ".join(TASKS[t][5] for t in tasks) + " |")
    print("|---|---:|" + "---:|" * len(tasks))
    data = {t: (read(t, "train"), read(t, "dev")) for t in tasks}
    scarce = []
    for t in tasks:
        tr, dev = data[t]
        vs = [100 * score(t, random.Random(s).sample(tr, 1000), dev) for s in range(args.samples)]
        scarce.append(f"{statistics.mean(vs):.1f} ± {statistics.stdev(vs):.1f}" if len(vs) > 1 else f"{vs[0]:.1f}")
    print(f"| {args.samples} samples of 1,000 | 1,000 | " + " | ".join(scarce) + " |")
    print("| the full training set | all | " + " | ".join(f"{100 * score(t, *data[t]):.1f}" for t in tasks) + " |")


if __name__ == "__main__":
    main()
