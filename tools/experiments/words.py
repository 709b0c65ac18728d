#!/usr/bin/python3
"""Word-counting baselines beside the results tables: what the words alone get on GLUE,
without any transformer.

    words.py [--tasks sst2,cola,mrpc,rte,stsb] [--samples 10]

Single-sentence tasks (SST-2, CoLA): multinomial naive Bayes over lower-cased unigrams and
bigrams (add-one smoothing). Sentence pairs (MRPC, RTE, STS-B): word overlap, the classic
lexical baseline: five overlap features of the two sentences' lower-cased words (Jaccard of the
word sets and of the bigram sets, the share of each sentence's words found in the other, the
length ratio), a least-squares fit of the label (0/1) or the similarity score on them, and for the
classification tasks the threshold on the fitted value that is most accurate on the training data.
Each is trained on the full training set and on 1,000 examples drawn without replacement
(--samples draws, seeds 0..N-1; not the engine's own sample, which uses its own generator), and
scored on the dev set with GLUE's metric. Prints one markdown table per kind. Data, metrics and
the tables' number format: glue.py's. Standard library only.
"""
import argparse
import math
import os
import random
import re
import statistics
import sys
from collections import Counter

from glue import DATA, TASKS as GLUE, fmt

# The single-sentence tasks' file layout: (text column, label column, has a header line).
LAYOUT = {"sst2": (0, 1, True), "cola": (3, 1, False)}
# The sentence pairs': (first sentence's column, second's, label column, how a label reads); all have a header.
PAIRS = {"mrpc": (3, 4, 0, int), "rte": (1, 2, 3, lambda v: {"entailment": 1, "not_entailment": 0}[v]), "stsb": (7, 8, 9, float)}


def fail(message):
    print(f"words.py: {message}", file=sys.stderr)
    sys.exit(2)


def read(task, split):
    """The rows (text, label) of a single-sentence task, ((first, second), label) of a pair task."""
    if task in LAYOUT:
        text, label, header = LAYOUT[task]
        parse, want = lambda c: (c[text], int(c[label])), f"the text in column {text + 1} and a 0/1 label in column {label + 1}"
    else:
        a, b, label, value = PAIRS[task]
        header = True
        parse = lambda c: ((c[a], c[b]), value(c[label]))
        want = f"the sentences in columns {a + 1} and {b + 1} and the {'score' if value is float else 'label'} in column {label + 1}"
    path = os.path.join(DATA, GLUE[task][0 if split == "train" else 1])
    rows = []
    try:
        with open(path, encoding="utf-8-sig") as f:  # MRPC's files start with a byte-order mark
            for n, line in enumerate(f, 1):
                if header and n == 1:
                    continue
                try:
                    rows.append(parse(line.rstrip("\n").split("\t")))
                except (IndexError, ValueError, KeyError):
                    fail(f"{path} line {n}: expected {want}")
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
    if name == "f1":
        return 2 * tp / (2 * tp + fp + fn) if tp else 0.0
    d = math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    return (tp * tn - fp * fn) / d if d else 0.0


def overlap(pair):
    """Five overlap features of a sentence pair, and a constant."""
    a, b = (re.findall(r"\w+", t.lower()) for t in pair)
    A, B = set(a), set(b)
    A2, B2 = set(zip(a, a[1:])), set(zip(b, b[1:]))
    share = lambda x, y: len(x & y) / len(x) if x else 0.0
    return [1.0, share(A | B, A & B), share(A2 | B2, A2 & B2), share(A, B), share(B, A), min(len(a), len(b)) / max(len(a), len(b), 1)]


def solve(m, v):
    """m x = v for a positive definite m, by Gauss-Jordan elimination with partial pivoting."""
    n = len(v)
    m = [row[:] + [v[i]] for i, row in enumerate(m)]
    for c in range(n):
        p = max(range(c, n), key=lambda r: abs(m[r][c]))
        m[c], m[p] = m[p], m[c]
        for r in range(n):
            if r != c:
                f = m[r][c] / m[c][c]
                m[r] = [x - f * y for x, y in zip(m[r], m[c])]
    return [m[i][n] / m[i][i] for i in range(n)]


def fit(rows):
    """Least squares of the label on the overlap features (ridge 1e-6 keeps it solvable), and for a
    0/1 label the threshold on the fitted value that is most accurate on these rows."""
    X = [overlap(p) for p, _ in rows]
    y = [v for _, v in rows]
    k = len(X[0])
    gram = [[sum(x[i] * x[j] for x in X) + (1e-6 if i == j else 0.0) for j in range(k)] for i in range(k)]
    w = solve(gram, [sum(x[i] * t for x, t in zip(X, y)) for i in range(k)])
    if not all(t in (0, 1) for t in y):
        return w, None
    fitted = sorted(zip((sum(a * b for a, b in zip(w, x)) for x in X), y))
    # Predict 1 from index i on: correct = zeros before i + ones from i.
    best, threshold, zeros, ones = -1, math.inf, 0, sum(y)
    for i in range(len(fitted) + 1):
        if zeros + ones > best and (i == 0 or i == len(fitted) or fitted[i - 1][0] < fitted[i][0]):
            best = zeros + ones
            threshold = fitted[i][0] if i < len(fitted) else math.inf
        if i < len(fitted):
            zeros, ones = zeros + (fitted[i][1] == 0), ones - (fitted[i][1] == 1)
    return w, threshold


def score(task, rows, dev):
    gold = [y for _, y in dev]
    if task in LAYOUT:
        model, vocab = train(rows)
        return metric(GLUE[task][2], gold, [predict(model, vocab, t) for t, _ in dev])
    w, threshold = fit(rows)
    fitted = [sum(a * b for a, b in zip(w, overlap(p))) for p, _ in dev]
    if threshold is None:
        return statistics.correlation(fitted, gold)  # Pearson's
    return metric(GLUE[task][2], gold, [int(v >= threshold) for v in fitted])


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", default="sst2,cola,mrpc,rte,stsb")
    p.add_argument("--samples", type=int, default=10)
    args = p.parse_args()
    tasks = args.tasks.split(",")
    for t in tasks:
        if t not in LAYOUT and t not in PAIRS:
            fail(f"--tasks: unknown task '{t}' (known: {', '.join([*LAYOUT, *PAIRS])})")
    if args.samples < 1:
        fail(f"--samples: {args.samples}: at least 1")
    data = {t: (read(t, "train"), read(t, "dev")) for t in tasks}
    for t, (tr, _) in data.items():
        if len(tr) < 1000:
            fail(f"{os.path.join(DATA, GLUE[t][0])}: {len(tr)} training examples, fewer than the 1,000 to sample")
    kinds = [("bag of words (naive Bayes, unigrams + bigrams)", [t for t in tasks if t in LAYOUT]),
             ("word overlap (least squares on 5 overlap features)", [t for t in tasks if t in PAIRS])]
    for i, (kind, these) in enumerate((k, ts) for k, ts in kinds if ts):
        if i:
            print()
        print(f"| {kind} | training examples | " + " | ".join(GLUE[t][3] for t in these) + " |")
        print("|---|---:|" + "---:|" * len(these))
        scarce = [fmt([score(t, random.Random(s).sample(data[t][0], 1000), data[t][1]) for s in range(args.samples)]) for t in these]
        print(f"| {args.samples} samples of 1,000 | 1,000 | " + " | ".join(scarce) + " |")
        print("| the full training set | all | " + " | ".join(fmt([score(t, *data[t])]) for t in these) + " |")


if __name__ == "__main__":
    main()
