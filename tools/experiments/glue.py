#!/usr/bin/python3
"""The results tables of docs/results.md, run end to end with the engine (issue #15).

    glue.py run TABLE [TABLE ...] --backbone DIR [--random-backbone DIR] [--runs DIR]
                [--regime scarce|full] [--tasks sst2,mrpc,cola,rte,stsb] [--seeds 1,2,3]
                [--epochs N] [--jobs N] [--configs a,b] [--dry-run]
    glue.py report [--runs DIR] [--out FILE]
    glue.py tables                     (lists the tables and their cells)

`run` trains every cell (table x task x configuration x seed) that has no finished run yet and
keeps each cell's folder: RUNS/BACKBONE/REGIME/TASK/CONFIG/seedN/ with the engine's eval.json
(the dev metrics after the last epoch: no checkpoint is chosen on the dev set), metrics.jsonl,
stdout.txt and run.json (the exact command, wall time, trained parameters, the machine and its
load). Checkpoints are deleted once a cell is done (the tables need none of them). An interrupted
`run` is simply run again: finished cells are skipped; a cell whose recorded command differs from
the one it would run now is refused (delete it, or use another --runs), so a table never mixes
settings silently.

Every finished cell is also appended to the ledger, docs/results/cells.jsonl (--ledger): one
line per cell with its metrics, trained parameters, wall time, machine, learned depth-wise weights
and its command with the paths made relative. The ledger is committed; the run folders are not
(nothing outside the repository survives a session), so the tables can always be rebuilt and a
later session adds seeds or tasks to a table instead of replacing it.

`report` turns every finished cell (the ledger's and --runs's) into markdown tables (mean +-
sample std over seeds, the number of seeds, trained parameters, seconds per run) and writes them
to --out (default: print). Each table sits between its own markers, one per backbone, table and
regime; a table with no cells is left as it is. Tables made before the ledger existed carry
"pre-ledger" in their marker: they are not replaced (their cells are gone and a few new ones
would silently stand for the whole table) unless --replace-pre-ledger is given.

Data: ENGINE_DATA or ../shared/data (GLUE's train and dev files; dev is the evaluation set, as
GLUE's test labels are not public). Engine: ENGINE or the Debug build. Standard library only.
"""
import argparse
import json
import math
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time
import threading
from concurrent.futures import ThreadPoolExecutor

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
DATA = os.path.abspath(os.environ.get("ENGINE_DATA") or os.path.join(REPO, "..", "shared", "data"))
LEDGER = os.path.join(REPO, "docs", "results", "cells.jsonl")
ENGINE = os.environ.get("ENGINE") or os.path.join(REPO, "tools", "Engine.Cli", "bin", "Debug", "net10.0", "engine")

# task: (train file, dev file, metric reported, label of the metric)
TASKS = {
    "sst2": ("glue/SST-2/train.tsv", "glue/SST-2/dev.tsv", "accuracy", "SST-2 acc"),
    "mrpc": ("glue/MRPC/train.tsv", "glue/MRPC/dev.tsv", "f1", "MRPC F1"),
    "cola": ("glue/CoLA/train.tsv", "glue/CoLA/dev.tsv", "mcc", "CoLA MCC"),
    "rte": ("glue/RTE/train.tsv", "glue/RTE/dev.tsv", "accuracy", "RTE acc"),
    "stsb": ("glue/STS-B/train.tsv", "glue/STS-B/dev.tsv", "pearson", "STS-B Pearson"),
}
CLASSIFICATION = ["sst2", "mrpc", "cola", "rte"]

# Configurations: name -> engine train options (besides data, seed, epochs and the common ones).
# Learning rates: one per method, the usual order of magnitude for small BERTs (no sweep; the
# tables say so). Every method trains the classification head as well.
CONFIGS = {
    "full": ["--method", "full", "--lr", "1e-4"],
    "full-random": ["--method", "full", "--lr", "1e-4"],  # on --random-backbone
    "head": ["--method", "head", "--lr", "5e-3"],
    "lora": ["--method", "lora", "--lr", "1e-3"],
    "dora": ["--method", "dora", "--lr", "1e-3"],
    "ia3": ["--method", "ia3", "--lr", "3e-3"],
    "bitfit": ["--method", "bitfit", "--lr", "1e-3"],
    "prefix": ["--method", "prefix", "--lr", "5e-3"],
    "prompt": ["--method", "prompt", "--lr", "1e-2"],
    "full+depthwise": ["--method", "full", "--lr", "1e-4", "--pooling", "depthwise"],
    "head+depthwise": ["--method", "head", "--lr", "5e-3", "--pooling", "depthwise"],
    "lt-prefix": ["--method", "lt-prefix", "--lr", "5e-3"],
    "lt-prompt": ["--method", "lt-prompt", "--lr", "1e-2"],
    "ehft-bitfit": ["--method", "ehft", "--ehft-stage1", "bitfit", "--lr", "1e-4"],
    "ehft-lora": ["--method", "ehft", "--ehft-stage1", "lora", "--lr", "1e-4"],
    "spafit": ["--method", "spafit", "--lr", "1e-3"],
    "lora-all": ["--method", "lora", "--lora-targets", "all-linear", "--lr", "1e-3"],
    "select-auto-1": ["--method", "select", "--head-layer", "auto", "--tune-layers", "1", "--lr", "1e-3"],
    "select-top-1": ["--method", "select", "--tune-layers", "1", "--lr", "1e-3"],
    # Ablations of select-auto-1 (whose rule trains the embeddings when K = N = 1): the same block
    # with the embeddings frozen, and the head alone on the chosen block (at the head's rate).
    "select-auto-1-frozen-emb": ["--method", "select", "--head-layer", "auto", "--tune-layers", "1", "--freeze-embeddings", "--lr", "1e-3"],
    "select-auto-0": ["--method", "select", "--head-layer", "auto", "--tune-layers", "0", "--lr", "5e-3"],
    "full+head-lr": ["--method", "full", "--lr", "1e-4", "--head-lr", "5e-3"],
    "full+depthwise+head-lr": ["--method", "full", "--lr", "1e-4", "--head-lr", "5e-3", "--pooling", "depthwise"],
}

def at_rate(base, rate):
    """The configuration BASE@RATE: BASE's options with --lr RATE (registered in CONFIGS on first use)."""
    opts = list(CONFIGS[base])
    opts[opts.index("--lr") + 1] = rate
    CONFIGS[f"{base}@{rate}"] = opts
    return f"{base}@{rate}"


def rate_of(config):
    return CONFIGS[config][CONFIGS[config].index("--lr") + 1]


def swept(base, rates):
    """BASE and BASE@RATE for each rate, lowest rate first."""
    return sorted([base] + [at_rate(base, r) for r in rates], key=lambda c: float(rate_of(c)))


# The learning-rate table: the main comparisons' methods below and above their rate (full fine-tuning
# 0.3x to 30x, LoRA 0.3x to 10x, the head 0.2x to 10x, selection 0.3x and 3x).
SWEEP = {"full": ["3e-5", "3e-4", "1e-3", "3e-3"], "lora": ["3e-4", "3e-3", "1e-2"], "head": ["1e-3", "2e-2", "5e-2"],
         "select-auto-1": ["3e-4", "3e-3"]}


# table: (title, configurations, tasks it applies to (None: all), what it tests)
TABLES = {
    "baselines": ("Baselines", ["full", "head", "lora", "dora", "ia3", "bitfit", "prefix", "prompt", "full-random"], None,
                  "Every baseline method on the pretrained backbone; full-random is full fine-tuning of the same architecture from its random initialisation (the value of pretraining)."),
    "pooling": ("Depth-wise vs last-layer pooling", ["full", "full+depthwise", "head", "head+depthwise"], None,
                "The seed claims +1.5-6 points for depth-wise pooling, largest where data is scarce (head = frozen backbone)."),
    "ltuning": ("L-Tuning vs prefix/prompt", ["prefix", "lt-prefix", "prompt", "lt-prompt"], CLASSIFICATION,
                "L-Tuning's Table 1 setting: label texts are the class names."),
    "ehft": ("EH-FT vs full fine-tuning", ["full", "ehft-bitfit", "ehft-lora"], None, "EH-FT: a stage-1 PEFT warm-up of the head, then full fine-tuning."),
    "spafit": ("SPAFIT vs LoRA and BitFit on all layers", ["spafit", "lora-all", "bitfit"], None, "At matched or fewer trained parameters."),
    "pooling-lr": ("Depth-wise pooling under full fine-tuning with the head's own learning rate", ["full+head-lr", "full+depthwise+head-lr"], None,
                   "Full fine-tuning at 1e-4 leaves the depth-wise weights at their uniform start; here the head and the depth-wise weights train at 5e-3 (--head-lr), the body at 1e-4, with and without depth-wise pooling."),
    "variability": ("Layer selection by variability", ["select-auto-1", "select-top-1", "full", "select-auto-1-frozen-emb", "select-auto-0"], CLASSIFICATION,
                    "Head at the layer of lowest variability (auto), tuning one block, vs the top block, vs full; "
                    "ablations: the chosen block with the embeddings frozen (-frozen-emb), and the head alone on it (select-auto-0)."),
    "lr": ("Learning rates", [c for b, rates in SWEEP.items() for c in swept(b, rates)], CLASSIFICATION,
           "The other tables use one learning rate per method; here the main comparisons' methods at lower and higher rates "
           "(METHOD@RATE; the plain name is the other tables' rate), so a verdict that hangs on the rate shows."),
    # The rates the learning-rate table found best on llama-mini-20M (SST-2): full 1e-3, LoRA 3e-3, head 2e-2.
    "tuned": ("The seed methods' comparisons at the better learning rates",
              [at_rate("full", "1e-3"), at_rate("full+depthwise", "1e-3"), at_rate("head", "2e-2"), at_rate("head+depthwise", "2e-2"),
               at_rate("ehft-bitfit", "1e-3"), at_rate("ehft-lora", "1e-3"), at_rate("select-auto-1", "3e-3"), at_rate("select-top-1", "3e-3"),
               at_rate("lora", "3e-3"), at_rate("dora", "3e-3"), at_rate("lora-all", "3e-3"), at_rate("spafit", "3e-3")], CLASSIFICATION,
              "Tables 2 and 4-6 again, each method at the rate the learning-rate table found best for its family (full fine-tuning "
              "and everything that fine-tunes the whole body 1e-3, the head 2e-2, LoRA-like and block-tuning methods 3e-3)."),
    # For --regime full (every training example; on llama-mini-20M SST-2 at one epoch takes ~8.5 minutes a full fine-tuning run
    # on the 2 cores, two runs at a time; the small tasks at 3 epochs a third of that).
    "full-data": ("The full training set at the better learning rates",
                  [at_rate("full", "1e-3"), at_rate("full+depthwise", "1e-3"), at_rate("full-random", "1e-3"), at_rate("lora", "3e-3"),
                   at_rate("head", "2e-2"), at_rate("head+depthwise", "2e-2")], None,
                  "Full fine-tuning (and from random initialisation), LoRA and the head, with and without depth-wise pooling, "
                  "at the rates the learning-rate table found best with 1,000 examples."),
    "full-data-peft": ("The other baselines on the full training set",
                       ["lora", at_rate("dora", "3e-3"), "ia3", at_rate("prefix", "1.5e-2"), "prompt"], None,
                       "DoRA, (IA)3, prefix and prompt tuning with every training example, each at the best of the rates tried with "
                       "1,000 examples, and LoRA at a third of its rate there (1e-3: full fine-tuning's best rate fell threefold from "
                       "1,000 examples to the full sets). BitFit is not here: a Llama has no biases, so it trains the head alone."),
    "full-data-seed": ("The seed methods on the full training set",
                       [at_rate("full", "3e-4"), at_rate("ehft-bitfit", "3e-4"), at_rate("ehft-lora", "3e-4"), "lora", at_rate("lora-all", "1e-3"),
                        at_rate("spafit", "1e-3"), at_rate("select-auto-1", "1e-3"), at_rate("select-top-1", "1e-3")], None,
                       "EH-FT, SPAFIT and variability-guided selection (with their comparison rows) with every training example, "
                       "at a third of the rates found best with 1,000 examples, as the full-data tables found for full fine-tuning "
                       "and LoRA: EH-FT's stage 2 (full fine-tuning) 3e-4, the LoRA family and block tuning 1e-3."),
    "full-data-ltuning": ("L-Tuning vs prefix/prompt on the full training set",
                          [at_rate("prefix", "1.5e-2"), at_rate("lt-prefix", "1.5e-2"), "prompt", "lt-prompt"], CLASSIFICATION,
                          "L-Tuning at prefix's and prompt's rates (the best of those tried with 1,000 examples)."),
    "full-data-lr": ("Full fine-tuning's rate, pretrained against random initialisation",
                     ["full", at_rate("full", "3e-4"), at_rate("full", "1e-3"), at_rate("full-random", "3e-4"), at_rate("full-random", "1e-3")], None,
                     "Whether the rate found best with 1,000 examples (160 steps) wipes out what pretraining gave once the "
                     "full training sets run for thousands of steps: full fine-tuning at three rates (`full` is 1e-4) beside "
                     "the same architecture from random initialisation at two."),
    "ltuning-lr": ("L-Tuning vs prefix/prompt at three learning rates",
                   swept("prefix", ["1.5e-3", "1.5e-2"]) + swept("lt-prefix", ["1.5e-3", "1.5e-2"])
                   + swept("prompt", ["3e-3", "3e-2"]) + swept("lt-prompt", ["3e-3", "3e-2"]), CLASSIFICATION,
                   "The L-Tuning table at a third of and three times each method's rate, so its verdict does not hang on one rate."),
}

def markers(backbone, section):
    """The start-marker prefix and the end marker around one generated section (a table: "KEY REGIME",
    or "charts") of a backbone in the markdown page. The start marker continues after the prefix
    (": generated ..." or " pre-ledger: ...") up to its "-->"."""
    return f"<!-- table {backbone} {section}", f"<!-- end of table {backbone} {section} -->"

COMMON = ["--batch", "32", "--max-len", "128", "--bucket", "--warmup", "0.1", "--schedule", "linear", "--log-every", "5", "--eval-every", "0"]


def cells(tables, tasks, seeds):
    """Seed by seed, so a run cut short leaves whole rows with fewer seeds rather than missing rows."""
    seen = set()
    for t in tables:
        _, configs, only, _ = TABLES[t]
        for s in seeds:
            for task in tasks:
                if only is not None and task not in only:
                    continue
                for c in configs:
                    if (task, c, s) not in seen:
                        seen.add((task, c, s))
                        yield task, c, s


def command(args, task, config, seed, out):
    train, dev, _, _ = TASKS[task]
    backbone = args.random_backbone if config.split("@")[0].endswith("-random") else args.backbone
    if backbone is None:
        sys.exit(f"glue.py: {config} needs --random-backbone")
    cmd = [ENGINE, "train", "--model", backbone, "--task", task, "--train", os.path.join(DATA, train), "--eval", os.path.join(DATA, dev),
           "--epochs", str(args.epochs), "--seed", str(seed), "--out", out] + COMMON + CONFIGS[config]
    if args.regime == "scarce":
        cmd += ["--train-sample", "1000", "--sample-seed", "0"]
    if config.startswith("select-auto"):
        cmd += ["--variability", os.path.join(args.runs, name_of(args.backbone), "variability", task, "nu.json")]
    return cmd


def name_of(backbone):
    return os.path.basename(os.path.normpath(backbone))


def comparable(cmd, args):
    """The command without the engine and with this machine's paths replaced (RUNS, BACKBONE,
    RANDOM_BACKBONE, DATA), so a finished cell's settings compare equal on any machine."""
    return same_paths(cmd[1:], args)


def same_paths(words, args):
    """words with this machine's run, backbone and data paths written as RUNS, BACKBONE, RANDOM_BACKBONE, DATA."""
    subs = [(p, name) for p, name in ((getattr(args, "runs", None), "RUNS"), (getattr(args, "random_backbone", None), "RANDOM_BACKBONE"),
                                      (getattr(args, "backbone", None), "BACKBONE"), (DATA, "DATA")) if p]
    out = []
    for a in words:
        if isinstance(a, str):
            for p, name in subs:
                if a == p or a.startswith(p + os.sep):
                    a = name + a[len(p):]
                    break
        out.append(a)
    return out


def variability(args, task):
    """engine analyze variability for the task's training data (the select-auto cells read it).
    The ν of every task is kept in the ledger too; a fresh machine writes nu.json back from it."""
    out = os.path.join(args.runs, name_of(args.backbone), "variability", task)
    nu_json = os.path.join(out, "nu.json")
    kept = [x for x in read_ledger(args.ledger) if x.get("kind") == "nu" and x["backbone"] == name_of(args.backbone) and x["task"] == task]
    if not os.path.exists(nu_json) and kept:
        if args.dry_run:
            print(f"  {nu_json} from the ledger", flush=True)
            return
        os.makedirs(out, exist_ok=True)
        json.dump({"nu": kept[0]["nu"]}, open(nu_json, "w"))
    if os.path.exists(nu_json):
        return
    train, _, _, _ = TASKS[task]
    os.makedirs(out, exist_ok=True)
    cmd = [ENGINE, "analyze", "variability", "--model", args.backbone, "--task", task, "--data", os.path.join(DATA, train),
           "--max-examples", "1000", "--out", nu_json, "--plot", os.path.join(out, "nu.png")]
    print("  " + " ".join(cmd), flush=True)
    if not args.dry_run:
        subprocess.run(cmd, check=True, stdout=open(os.path.join(out, "stdout.txt"), "w"), stderr=subprocess.STDOUT)
        with LEDGER_LOCK, open(args.ledger, "a") as f:
            f.write(json.dumps({"kind": "nu", "backbone": name_of(args.backbone), "task": task, "nu": json.load(open(nu_json))["nu"],
                                "compare": comparable(cmd, args), "host": socket.gethostname(),
                                "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}, separators=(",", ":")) + "\n")


LEDGER_LOCK = threading.Lock()


def depth_weights_of(text):
    """The learned depth-wise pooling weights engine train prints at the end, or None."""
    if "depth-wise pooling weights (per layer):\n" not in text:
        return None
    block = text.split("depth-wise pooling weights (per layer):\n", 1)[1]
    ws = re.findall(r"^\s+layer (\S+)\s+(-?[\d.]+)\s+#*$", block, re.M)
    return [[label, float(w)] for label, w in ws] or None


def ledger_key(r):
    return (r["backbone"], r["regime"], r["task"], r["config"], r["seed"])


def read_ledger(path):
    found = []
    if os.path.exists(path):
        for n, line in enumerate(open(path), 1):
            if line.strip():
                try:
                    found.append(json.loads(line))
                except json.JSONDecodeError:
                    sys.exit(f"glue.py: {path} line {n}: not a JSON record")
    return found


def ledger_add(args, root, backbone):
    """Appends the finished cell in root to the ledger unless it is there already."""
    r = json.load(open(os.path.join(root, "run.json")))
    rec = {"backbone": backbone, "regime": r["regime"], "task": r["task"], "config": r["config"], "seed": r["seed"],
           "eval": json.load(open(os.path.join(root, "eval.json"))),
           "depth_weights": depth_weights_of(open(os.path.join(root, "stdout.txt")).read()),
           **{k: r[k] for k in ("trained", "total", "steps", "train_seconds", "wall_seconds", "threads", "load_before", "load_after",
                                "host", "cores", "finished", "compare")},
           **{k: r[k] for k in ("trained_stage1",) if k in r}}
    with LEDGER_LOCK:
        if any("kind" not in x and ledger_key(x) == ledger_key(rec) for x in read_ledger(args.ledger)):
            return
        os.makedirs(os.path.dirname(args.ledger), exist_ok=True)
        with open(args.ledger, "a") as f:
            f.write(json.dumps(rec, separators=(",", ":")) + "\n")


def run_cell(args, task, config, seed, threads):
    root = os.path.join(args.runs, name_of(args.backbone), args.regime, task, config, f"seed{seed}")
    cmd = command(args, task, config, seed, root)
    record = os.path.join(root, "run.json")
    if os.path.exists(record):
        done = json.load(open(record))
        if same_paths(done["compare"], args) != comparable(cmd, args):
            sys.exit(f"glue.py: {root} was run with other settings ({' '.join(done['command'])}); delete it or use another --runs")
        if not args.dry_run:
            ledger_add(args, root, name_of(args.backbone))
        return f"skip {task} {config} seed{seed}"
    key = (name_of(args.backbone), args.regime, task, config, seed)
    kept = [x for x in read_ledger(args.ledger) if "kind" not in x and ledger_key(x) == key]
    if kept:
        if same_paths(kept[0]["compare"], args) != comparable(cmd, args):
            sys.exit(f"glue.py: the ledger's {' '.join(map(str, key))} was run with other settings ({' '.join(kept[0]['compare'])}); "
                     f"remove its line from {args.ledger} to run it again")
        return f"skip {task} {config} seed{seed} (in the ledger)"
    if args.dry_run:
        return " ".join(cmd)
    if os.path.exists(root):
        shutil.rmtree(root)  # an unfinished cell starts over
    os.makedirs(root)
    env = dict(os.environ, DOTNET_PROCESSOR_COUNT=str(threads))
    load = os.getloadavg()[0]
    start = time.time()
    with open(os.path.join(root, "stdout.txt"), "w") as log:
        code = subprocess.run(cmd + ["--overwrite"], stdout=log, stderr=subprocess.STDOUT, env=env).returncode
    wall = time.time() - start
    text = open(os.path.join(root, "stdout.txt")).read()
    if code != 0:
        return f"FAILED {task} {config} seed{seed} (exit {code}): {text.strip().splitlines()[-1] if text.strip() else ''}"
    trained = re.search(r"([\d,]+) of ([\d,]+) parameters trained", text)
    stage2 = re.search(r"stage 2 .*?: ([\d,]+) parameters trained", text)  # EH-FT: the first count is stage 1's
    done = re.search(r"done: (\d+) steps in ([\d.]+) s, ([\d,]+) tokens/s", text)
    for d in ("checkpoint-best", "checkpoint-last"):
        shutil.rmtree(os.path.join(root, d), ignore_errors=True)
    json.dump({
        "command": cmd, "compare": comparable(cmd, args), "task": task, "config": config, "seed": seed, "regime": args.regime,
        "trained": int((stage2 or trained).group(1).replace(",", "")), "total": int(trained.group(2).replace(",", "")),
        **({"trained_stage1": int(trained.group(1).replace(",", ""))} if stage2 else {}),
        "steps": int(done.group(1)), "train_seconds": float(done.group(2)), "wall_seconds": round(wall, 1),
        "threads": threads, "load_before": round(load, 2), "load_after": round(os.getloadavg()[0], 2),
        "host": socket.gethostname(), "cores": os.cpu_count(), "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }, open(record + ".tmp", "w"), indent=1)
    os.replace(record + ".tmp", record)
    ledger_add(args, root, name_of(args.backbone))
    ev = json.load(open(os.path.join(root, "eval.json")))
    return f"done {task} {config} seed{seed}: {TASKS[task][2]} {ev[TASKS[task][2]]:.4f} in {wall:.0f} s"


def run(args):
    tasks = args.tasks.split(",")
    seeds = [int(s) for s in args.seeds.split(",")]
    for t in args.tables:
        if t not in TABLES:
            sys.exit(f"glue.py: unknown table {t}; one of {', '.join(TABLES)}")
    for t in tasks:
        if t not in TASKS:
            sys.exit(f"glue.py: unknown task {t}; one of {', '.join(TASKS)}")
    todo = list(cells(args.tables, tasks, seeds))
    if args.configs:
        keep = args.configs.split(",")
        for c in keep:
            if c not in CONFIGS:
                sys.exit(f"glue.py: unknown configuration {c}; one of {', '.join(CONFIGS)}")
        todo = [cell for cell in todo if cell[1] in keep]
    if any(c.startswith("select-auto") for _, c, _ in todo):
        for task in sorted({t for t, c, _ in todo if c.startswith("select-auto")}):
            variability(args, task)
    threads = max(1, (os.cpu_count() or 1) // args.jobs)
    print(f"{len(todo)} cells, {args.jobs} at a time, {threads} thread(s) each", flush=True)
    with ThreadPoolExecutor(args.jobs) as pool:
        for line in pool.map(lambda c: run_cell(args, *c, threads), todo):
            print(line, flush=True)


def load_runs(runs, ledger):
    """Every finished cell: the ledger's, and those under runs the ledger lacks (a run folder wins
    over the ledger's line for the same cell)."""
    found = {}
    for r in read_ledger(ledger):
        if "kind" not in r:
            found[ledger_key(r)] = r
    for dirpath, _, files in os.walk(runs) if os.path.isdir(runs) else ():
        if "run.json" in files and "eval.json" in files:
            r = json.load(open(os.path.join(dirpath, "run.json")))
            r["eval"] = json.load(open(os.path.join(dirpath, "eval.json")))
            r["backbone"] = os.path.relpath(dirpath, runs).split(os.sep)[0]
            r["depth_weights"] = depth_weights_of(open(os.path.join(dirpath, "stdout.txt")).read())
            found[ledger_key(r)] = r
    return list(found.values())


def fmt(values):
    if not values:
        return ""
    m = 100 * statistics.mean(values)
    if len(values) == 1:
        return f"{m:.1f}"  # one run has no spread to give (the cell says n=1)
    return f"{m:.1f} ± {100 * statistics.stdev(values):.1f}"


def pyplot(args):
    """matplotlib's pyplot (Debian: python3-matplotlib), or None: the tables need no charts."""
    if not args.charts:
        return None
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        os.makedirs(args.charts, exist_ok=True)
        return plt
    except ImportError:
        print("glue.py: no matplotlib (apt-get install python3-matplotlib): tables without charts", file=sys.stderr)
        args.charts = None
        return None


def link(args, name):
    """The chart's path as the markdown file (--out) sees it."""
    path = os.path.join(args.charts, name)
    return os.path.relpath(path, os.path.dirname(os.path.abspath(args.out))) if args.out else path


def save(args, plt, fig, name):
    """Writes the chart into --charts and returns its link."""
    fig.tight_layout()
    fig.savefig(os.path.join(args.charts, name), dpi=90)
    plt.close(fig)
    return link(args, name)


def bar_heights(config, tasks, runs):
    """The bars of one configuration: per task the mean over seeds ×100 and the sample std; a cell
    not run is NaN, which draws no bar (a bar of 0 would read as a measured 0, a common MCC)."""
    means, stds = [], []
    for t in tasks:
        vs = [100 * r["eval"][TASKS[t][2]] for r in runs if r["config"] == config and r["task"] == t]
        means.append(statistics.mean(vs) if vs else math.nan)
        stds.append(statistics.stdev(vs) if len(vs) > 1 else 0)
    return means, stds


def bars(args, name, title, configs, tasks, runs):
    """One group of bars per task, one bar per configuration: the mean over seeds, the sample std as error bar."""
    plt = pyplot(args)
    if plt is None:
        return None
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(tasks) + 0.3 * len(configs)), 3.6))
    width = 0.8 / len(configs)
    for i, c in enumerate(configs):
        means, stds = bar_heights(c, tasks, runs)
        ax.bar([j + (i - (len(configs) - 1) / 2) * width for j in range(len(tasks))], means, width, yerr=stds, capsize=2, label=c)
    ax.set_xticks(range(len(tasks)), [TASKS[t][3] for t in tasks])
    ax.set_ylabel("dev metric ×100")
    ax.set_title(title)
    ax.axhline(0, color="black", linewidth=0.5)
    ax.legend(fontsize=7, ncol=min(len(configs), 5))
    return save(args, plt, fig, name + ".png")


def nu_curves(args, backbone):
    """ν per layer for every task with an analyze-variability output (the ledger's or --runs's), in one chart."""
    found = {x["task"]: x["nu"] for x in read_ledger(args.ledger) if x.get("kind") == "nu" and x["backbone"] == backbone}
    for dirpath, _, files in os.walk(os.path.join(args.runs, backbone)):
        if "nu.json" in files:
            found[os.path.basename(dirpath)] = json.load(open(os.path.join(dirpath, "nu.json")))["nu"]
    found = sorted(found.items())
    plt = pyplot(args) if found else None
    if plt is None:
        return None
    fig, ax = plt.subplots(figsize=(5, 3.4))
    for task, nu in sorted(found):
        ax.plot(range(len(nu)), nu, marker="o", label=TASKS.get(task, (0, 0, 0, task))[3].split()[0])
    ax.set_xlabel("layer (0: embeddings)")
    ax.set_ylabel("ν (low: separates the classes)")
    ax.set_title("Variability per layer")
    ax.legend(fontsize=8)
    return save(args, plt, fig, f"{backbone}-variability-nu.png")


def depth_weights(args, stem, runs):
    """The learned depth-wise pooling weights (printed by engine train) of a table's runs, mean over seeds, per task."""
    curves = {}
    for r in runs:
        ws = r.get("depth_weights")
        if "depthwise" in r["config"] and ws:
            curves.setdefault((r["task"], r["config"], r["regime"]), []).append([float(w) for _, w in ws])
            labels = [l for l, _ in ws]
    plt = pyplot(args) if curves else None
    if plt is None:
        return None
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    for (task, config, regime), ws in sorted(curves.items()):
        ax.plot(range(len(ws[0])), [statistics.mean(col) for col in zip(*ws)], marker="o", label=f"{TASKS[task][3].split()[0]} {config} {regime}")
    ax.set_xticks(range(len(labels)), labels)
    ax.set_xlabel("layer")
    ax.set_ylabel("weight")
    ax.set_title("Learned depth-wise pooling weights")
    ax.legend(fontsize=6)
    return save(args, plt, fig, f"{stem}-depth-weights.png")


def report(args):
    """The tables and charts of every backbone with finished cells, each in its own marked section
    of --out (see the module's docstring); sections without cells are left as they are."""
    runs = load_runs(args.runs, args.ledger)
    sections = []
    for b in sorted({r["backbone"] for r in runs}):
        sections += backbone_tables(args, b, [r for r in runs if r["backbone"] == b])
    if not args.out:
        for _, _, text in sections:
            sys.stdout.write(text + "\n")
        return
    page = open(args.out).read() if os.path.exists(args.out) else ""
    for b, section, text in sections:
        begin, end = markers(b, section)
        block = f"{begin}: generated by tools/experiments/glue.py report; edits between these markers are overwritten -->\n{text}{end}"
        if begin in page and end in page:
            head, rest = page.split(begin, 1)
            if rest.startswith(" pre-ledger") and not args.replace_pre_ledger:
                print(f"{args.out}: kept the pre-ledger table {b} {section} (--replace-pre-ledger replaces it with the ledger's cells)")
                continue
            page = head + block + rest.split(end, 1)[1]
        else:
            # a new section: after the backbone's last section, else after the last generated section, else at the end
            last = max(page.rfind(f"<!-- end of table {b} "), 0) or page.rfind("<!-- end of table ")
            at = page.index("-->", last) + 3 if last >= 0 else len(page)
            page = page[:at] + "\n\n" + block + page[at:]
        print(f"{args.out}: {b} {section}")
    open(args.out, "w").write(page)


def epochs_of(runs, tasks):
    """The table's epochs: one number, or per task where the tasks ran for different counts
    (the full training sets: SST-2 at 1 epoch, the small tasks at 3)."""
    per = {t: sorted({r["compare"][r["compare"].index("--epochs") + 1] for r in runs if r["task"] == t}) for t in tasks}
    if len({e for es in per.values() for e in es}) == 1:
        return per[tasks[0]][0]
    return ", ".join(f"{TASKS[t][3].split()[0]} {'/'.join(es)}" for t, es in per.items())


def backbone_tables(args, backbone, runs):
    """[(backbone, section, markdown)]: one per table and regime with cells, each with its charts."""
    out = []
    for regime in ("scarce", "full"):
        for key, (title, configs, only, what) in TABLES.items():
            mine = [r for r in runs if r["regime"] == regime and r["config"] in configs]
            if not all(any(r["config"] == c for r in mine) for c in configs):
                continue  # a configuration never run: this table was not run (its shared rows show in the tables that were)
            tasks = [t for t in TASKS if (only is None or t in only) and any(r["task"] == t for r in mine)]
            mine = [r for r in mine if r["task"] in tasks]
            seeds = sorted({r["seed"] for r in mine})
            # seconds per run over the tasks every row has, so that a row shared with a table run on more tasks compares
            common = [t for t in tasks if all(any(r["config"] == c and r["task"] == t for r in mine) for c in configs)] or tasks
            lines = [f"### {title} ({'1,000 training examples' if regime == 'scarce' else 'full training sets'}; {backbone})", "",
                     what, "",
                     f"Backbone {backbone}; dev-set {', '.join(TASKS[t][3] for t in tasks)} after the last epoch, ×100, mean ± std over seeds {', '.join(map(str, seeds))} (n in brackets when fewer).", "",
                     "| method | trained params (2 classes) | " + " | ".join(TASKS[t][3] for t in tasks) + " | mean | s/run |",
                     "|---|---:|" + "---:|" * len(tasks) + "---:|---:|"]
            for c in configs:
                rs = [r for r in mine if r["config"] == c]
                row, means = [], []
                for t in tasks:
                    vs = [r["eval"][TASKS[t][2]] for r in rs if r["task"] == t]
                    cell = fmt(vs) + (f" (n={len(vs)})" if vs and len(vs) < len(seeds) else "")
                    row.append(cell)
                    if vs:
                        means.append(statistics.mean(vs))
                two = [r["trained"] for r in rs if r["task"] in CLASSIFICATION]  # the head's width differs with the outputs: state 2 classes
                counts = sorted(set(two or [r["trained"] for r in rs]))  # a method may train a different part per task (select auto)
                ptext = f"{counts[0]:,}" if len(counts) == 1 else f"{counts[0]:,}–{counts[-1]:,} (per task)"
                avg = f"{100 * statistics.mean(means):.1f}" if len(means) == len(tasks) else ""
                secs = statistics.mean(r["wall_seconds"] for r in rs if r["task"] in common)
                lines.append(f"| {c} | {ptext} | " + " | ".join(row) + f" | {avg} | {secs:.0f} |")
            lines += ["", f"Settings: epochs {epochs_of(mine, tasks)}, {' '.join(COMMON)}; per-method options in tools/experiments/glue.py CONFIGS."
                      + ("" if common == tasks else f" s/run over {', '.join(TASKS[t][3].split()[0] for t in common)}, the tasks every row has."), ""]
            png = bars(args, f"{backbone}-{key}-{regime}", f"{title} ({regime}, {backbone})", configs, tasks, mine)
            if png:
                lines += [f"![{title}]({png})", ""]
            # the table's own charts: the learned depth-wise weights of its depth-wise rows, ν beside layer selection
            png = depth_weights(args, f"{backbone}-{key}-{regime}", mine)
            if png:
                lines += [f"![learned depth-wise weights]({png})", ""]
            png = nu_curves(args, backbone) if key == "variability" else None
            if png:
                lines += [f"![ν per layer]({png})", ""]
            out.append((backbone, f"{key} {regime}", "\n".join(lines) + "\n"))
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="what", required=True)
    r = sub.add_parser("run")
    r.add_argument("tables", nargs="+")
    r.add_argument("--backbone", required=True)
    r.add_argument("--random-backbone")
    r.add_argument("--runs", default=os.path.join(REPO, "..", "runs", "glue"))
    r.add_argument("--regime", choices=["scarce", "full"], default="scarce")
    r.add_argument("--tasks", default=",".join(TASKS))
    r.add_argument("--seeds", default="1,2,3")
    r.add_argument("--configs", help="only these configurations of the tables (comma-separated)")
    r.add_argument("--epochs", type=int, default=5)
    r.add_argument("--jobs", type=int, default=1)
    r.add_argument("--dry-run", action="store_true")
    r.add_argument("--ledger", default=LEDGER, help="the finished cells' records (default docs/results/cells.jsonl)")
    q = sub.add_parser("report")
    q.add_argument("--runs", default=os.path.join(REPO, "..", "runs", "glue"))
    q.add_argument("--out")
    q.add_argument("--charts", help="folder for the PNG charts (needs matplotlib); none without it")
    q.add_argument("--ledger", default=LEDGER)
    q.add_argument("--replace-pre-ledger", action="store_true", help="regenerate tables made before the ledger from the ledger's cells")
    sub.add_parser("tables")
    args = p.parse_args()
    if args.what == "run":
        args.runs = os.path.abspath(args.runs)
        args.backbone = os.path.abspath(args.backbone)
        if args.random_backbone:
            args.random_backbone = os.path.abspath(args.random_backbone)
        if not os.path.exists(ENGINE):
            sys.exit(f"glue.py: build first (dotnet build): {ENGINE} is missing")
        run(args)
    elif args.what == "report":
        report(args)
    else:
        for k, (title, configs, only, what) in TABLES.items():
            print(f"{k}: {title}: {', '.join(configs)}" + (f" (tasks {', '.join(only)})" if only else ""))


if __name__ == "__main__":
    main()
