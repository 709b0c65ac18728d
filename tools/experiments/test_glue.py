#!/usr/bin/python3
"""Tests of glue.py's bookkeeping with a fake engine (no training): the ledger, resuming, the
per-table sections of the report, pre-ledger tables kept; and of words.py, the bag-of-words baseline. Run: python3 tools/experiments/test_glue.py
(tests/Engine.Tests runs it too). Standard library only."""
import json
import math
import os
import random
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
GLUE = os.path.join(HERE, "glue.py")
WORDS = os.path.join(HERE, "words.py")

# Stands in for `engine train` / `engine analyze variability`: writes eval.json (a metric from the
# seed and the method, so cells differ) and the lines glue.py reads from stdout.
FAKE = r'''#!/usr/bin/env python3
import json, os, sys
a = sys.argv[1:]
def opt(name): return a[a.index(name) + 1] if name in a else None
if a[0] == "analyze":
    json.dump({"nu": [0.9, 0.5, 0.7]}, open(opt("--out"), "w")); print("wrote", opt("--out")); sys.exit(0)
if os.environ.get("FAKE_FAIL") == opt("--method"):
    print("engine: --method " + opt("--method") + ": planted failure"); sys.exit(2)
out = opt("--out"); os.makedirs(out, exist_ok=True)
v = 0.5 + 0.01 * int(opt("--seed")) + 0.1 * len(opt("--method")) / 10
json.dump({m: v for m in ("accuracy", "f1", "mcc", "pearson")}, open(os.path.join(out, "eval.json"), "w"))
print("full from step 1: 1,234 of 5,678 parameters trained")
if opt("--method") == "ehft":
    print("step 5/10\nstage 2 (full fine-tuning from the stage-1 head) from step 2: 5,000 parameters trained")
if opt("--pooling") == "depthwise":
    print("depth-wise pooling weights (per layer):\n  layer emb  0.100 #\n  layer 1    0.900 #########")
print("done: 10 steps in 1.5 s, 1,000 tokens/s")
'''


def write(path, text):
    with open(path, "w") as f:
        f.write(text)


def read(path):
    with open(path) as f:
        return f.read()


class GlueScript(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        t = self.tmp.name
        self.engine = os.path.join(t, "engine")
        write(self.engine, FAKE)
        os.chmod(self.engine, 0o755)
        self.backbone = os.path.join(t, "bb-1")
        os.makedirs(self.backbone)
        self.runs, self.cells, self.page = os.path.join(t, "runs"), os.path.join(t, "cells.jsonl"), os.path.join(t, "results.md")

    def tearDown(self):
        self.tmp.cleanup()

    def glue(self, *args, fail=None, check=True):
        env = dict(os.environ, ENGINE=self.engine)
        if fail:
            env["FAKE_FAIL"] = fail
        p = subprocess.run([sys.executable, GLUE, *args], env=env, capture_output=True, text=True)
        if check and p.returncode != 0:
            self.fail(p.stdout + p.stderr)
        return p

    def run_table(self, table, tasks, seeds, runs=None):
        return self.glue("run", table, "--backbone", self.backbone, "--runs", runs or self.runs, "--ledger", self.cells,
                         "--tasks", tasks, "--seeds", seeds, "--epochs", "1").stdout

    def ledger(self):
        return [json.loads(l) for l in read(self.cells).splitlines()]

    def test_cells_go_to_the_ledger_once_and_a_new_machine_skips_them(self):
        self.run_table("pooling", "sst2", "1")
        cells = self.ledger()
        self.assertEqual(sorted(c["config"] for c in cells), ["full", "full+depthwise", "head", "head+depthwise"])
        self.assertTrue(all(c["backbone"] == "bb-1" and c["seed"] == 1 and c["trained"] == 1234 for c in cells))
        depth = [c for c in cells if c["config"] == "full+depthwise"][0]
        self.assertEqual(depth["depth_weights"], [["emb", 0.1], ["1", 0.9]])
        text = json.dumps(cells)
        self.assertNotIn(self.runs, text)  # no machine's paths: the ledger means the same on any machine
        self.assertNotIn(self.tmp.name, text)
        self.assertIn('"--model", "BACKBONE"', text)
        again = self.run_table("pooling", "sst2", "1")  # same machine: the run folders are there
        self.assertEqual(again.count("skip"), 4)
        self.assertEqual(len(self.ledger()), 4)
        elsewhere = self.run_table("pooling", "sst2", "1", runs=os.path.join(self.tmp.name, "fresh"))  # the run folders are gone
        self.assertEqual(elsewhere.count("(in the ledger)"), 4, elsewhere)
        self.assertEqual(len(self.ledger()), 4)
        moved = os.path.join(self.tmp.name, "other", "bb-1")  # another machine: the same backbone in another folder
        os.makedirs(moved)
        out = self.glue("run", "pooling", "--backbone", moved, "--runs", os.path.join(self.tmp.name, "fresh2"), "--ledger", self.cells,
                        "--tasks", "sst2", "--seeds", "1", "--epochs", "1").stdout
        self.assertEqual(out.count("(in the ledger)"), 4, out)

    def test_a_staged_method_records_what_its_last_stage_trains(self):
        self.run_table("ehft", "sst2", "1")
        by = {c["config"]: c for c in self.ledger()}
        self.assertEqual((by["ehft-lora"]["trained"], by["ehft-lora"]["trained_stage1"]), (5000, 1234))
        self.assertEqual(by["full"]["trained"], 1234)
        self.assertNotIn("trained_stage1", by["full"])
        self.assertIn("| ehft-lora | 5,000 |", self.glue("report", "--runs", self.runs, "--ledger", self.cells).stdout)

    def test_the_learning_rate_table_runs_each_method_at_three_rates_and_shares_the_plain_cells(self):
        self.run_table("pooling", "sst2", "1")
        out = self.run_table("lr", "sst2", "1")
        for plain in ("full", "head"):
            self.assertIn(f"skip sst2 {plain} seed1", out)  # the other tables' cells are the middle rate
        by = {c["config"]: c for c in self.ledger() if "kind" not in c}  # (the "nu" line of select's analysis has no config)
        def rate(config):
            words = by[config]["compare"]
            return words[words.index("--lr") + 1], words[words.index("--method") + 1]
        self.assertEqual(rate("full@3e-5"), ("3e-5", "full"))
        self.assertEqual(rate("full"), ("1e-4", "full"))
        self.assertEqual(rate("lora@3e-3"), ("3e-3", "lora"))
        self.assertEqual(rate("head@2e-2"), ("2e-2", "head"))
        self.assertEqual(rate("select-auto-1@3e-4"), ("3e-4", "select"))
        self.assertIn("--variability", by["select-auto-1@3e-4"]["compare"])
        self.assertIn("RANDOM_BACKBONE", self.glue("run", "full-data", "--configs", "full-random@1e-3", "--backbone", self.backbone,
                                                   "--random-backbone", self.backbone + "-random", "--runs", self.runs, "--ledger", self.cells,
                                                   "--tasks", "sst2", "--seeds", "1", "--epochs", "1", "--dry-run").stdout.replace(self.backbone + "-random", "RANDOM_BACKBONE"))
        report = self.glue("report", "--runs", self.runs, "--ledger", self.cells).stdout
        table = report.split("### Learning rates", 1)[1]
        self.assertLess(table.index("| full@3e-5 |"), table.index("| full |"))
        self.assertLess(table.index("| full |"), table.index("| full@3e-4 |"))

    def test_seconds_per_run_are_over_the_tasks_every_row_has(self):
        self.run_table("pooling", "sst2", "1")
        self.glue("run", "pooling", "--configs", "full", "--backbone", self.backbone, "--runs", self.runs, "--ledger", self.cells,
                  "--tasks", "cola", "--seeds", "1", "--epochs", "1")
        cells = self.ledger()
        for c in cells:
            c["wall_seconds"] = 1000.0 if c["task"] == "cola" else 10.0
        write(self.cells, "".join(json.dumps(c) + "\n" for c in cells))
        table = self.glue("report", "--runs", os.path.join(self.tmp.name, "none"), "--ledger", self.cells).stdout.split("### Depth-wise", 1)[1]
        full = [l for l in table.splitlines() if l.startswith("| full |")][0]
        self.assertTrue(full.endswith("| 10 |"), full)
        self.assertIn("s/run over SST-2, the tasks every row has.", table)

    def test_a_cell_of_one_run_gives_no_spread(self):
        self.run_table("pooling", "sst2", "1")
        self.glue("run", "pooling", "--configs", "full", "--backbone", self.backbone, "--runs", self.runs, "--ledger", self.cells,
                  "--tasks", "sst2", "--seeds", "2", "--epochs", "1")
        rows = {l.split("|")[1].strip(): l.split("|")[3].strip() for l in
                self.glue("report", "--runs", self.runs, "--ledger", self.cells).stdout.split("### Depth-wise", 1)[1].splitlines() if l.startswith("| ")}
        self.assertRegex(rows["full"], r"^\d+\.\d ± \d+\.\d$")  # two seeds: mean ± sample std
        self.assertRegex(rows["head"], r"^\d+\.\d \(n=1\)$")  # one: the mean alone, not "± 0.0"

    def test_a_chart_draws_no_bar_for_a_cell_not_run_and_a_bar_for_a_measured_zero(self):
        sys.path.insert(0, HERE)
        import glue
        runs = [{"config": "full", "task": "cola", "eval": {"mcc": m}} for m in (0.0, 0.0)]
        means, stds = glue.bar_heights("full", ["cola", "sst2"], runs)
        self.assertEqual(means[0], 0.0)  # measured: a bar at 0
        self.assertEqual(stds[0], 0.0)
        self.assertTrue(math.isnan(means[1]))  # not run: no bar

    def test_a_table_whose_tasks_ran_for_different_epochs_says_so_per_task(self):
        for task, epochs in (("sst2", "1"), ("cola", "3")):
            self.glue("run", "full-data", "--regime", "full", "--backbone", self.backbone, "--random-backbone", self.backbone,
                      "--runs", self.runs, "--ledger", self.cells, "--tasks", task, "--seeds", "1", "--epochs", epochs)
        table = self.glue("report", "--runs", self.runs, "--ledger", self.cells).stdout.split("### The full training set", 1)[1]
        self.assertIn("(full training sets; bb-1)", table.splitlines()[0])
        self.assertIn("Settings: epochs SST-2 1, CoLA 3,", table)
        self.run_table("pooling", "sst2,cola", "1")  # one count for every task: one number
        self.assertIn("Settings: epochs 1,", self.glue("report", "--runs", self.runs, "--ledger", self.cells).stdout.split("### Depth-wise", 1)[1])

    def test_a_failed_cell_is_not_in_the_ledger(self):
        out = self.glue("run", "pooling", "--backbone", self.backbone, "--runs", self.runs, "--ledger", self.cells,
                        "--tasks", "sst2", "--seeds", "1", "--epochs", "1", fail="head").stdout
        self.assertEqual(out.count("FAILED"), 2, out)
        self.assertEqual(sorted(c["config"] for c in self.ledger()), ["full", "full+depthwise"])

    def test_other_settings_are_refused(self):
        self.run_table("pooling", "sst2", "1", runs=os.path.join(self.tmp.name, "a"))
        p = self.glue("run", "pooling", "--backbone", self.backbone, "--runs", os.path.join(self.tmp.name, "b"), "--ledger", self.cells,
                      "--tasks", "sst2", "--seeds", "1", "--epochs", "2", check=False)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("other settings", p.stderr)

    def test_report_adds_seeds_from_two_machines_and_keeps_pre_ledger_tables(self):
        old = ("intro\n\n<!-- table bb-1 baselines scarce pre-ledger: old -->\n### Baselines\n| old |\n\n<!-- end of table bb-1 baselines scarce -->\n"
               "\n<!-- table bb-1 pooling scarce pre-ledger: old -->\n### Depth-wise\n| old pooling |\n\n<!-- end of table bb-1 pooling scarce -->\n\nafter\n")
        write(self.page, old)
        self.run_table("pooling", "sst2", "1", runs=os.path.join(self.tmp.name, "m1"))
        self.run_table("pooling", "sst2", "2", runs=os.path.join(self.tmp.name, "m2"))
        self.run_table("ehft", "sst2", "1,2", runs=os.path.join(self.tmp.name, "m2"))
        self.glue("report", "--runs", os.path.join(self.tmp.name, "none"), "--ledger", self.cells, "--out", self.page)
        page = read(self.page)
        self.assertIn("| old |", page)  # pre-ledger tables stay
        self.assertIn("| old pooling |", page)
        self.assertIn("<!-- table bb-1 ehft scarce: generated", page)  # a new table gets its own section, before the text after
        self.assertLess(page.index("ehft scarce"), page.index("after"))
        self.assertIn("mean ± std over seeds 1, 2", page)
        self.glue("report", "--runs", os.path.join(self.tmp.name, "none"), "--ledger", self.cells, "--out", self.page, "--replace-pre-ledger")
        page = read(self.page)
        self.assertNotIn("| old pooling |", page)
        self.assertIn("| old |", page)  # no cells for the baselines: untouched even so
        row = [l for l in page.splitlines() if l.startswith("| full+depthwise |")][0]
        self.assertIn("55.5 ± 0.7", row)  # 0.5 + 0.01 × seed + 0.04 (--method full) over seeds 1 and 2
        self.assertEqual(page.count("<!-- table bb-1 pooling scarce"), 1)

    def test_variability_is_kept_and_written_back(self):
        self.run_table("variability", "sst2", "1")
        nu = [c for c in self.ledger() if c.get("kind") == "nu"]
        self.assertEqual([n["nu"] for n in nu], [[0.9, 0.5, 0.7]])
        fresh = os.path.join(self.tmp.name, "fresh")
        out = self.run_table("variability", "sst2", "2", runs=fresh)
        self.assertNotIn("analyze", out)  # ν came from the ledger, not a new analysis
        self.assertEqual(json.loads(read(os.path.join(fresh, "bb-1", "variability", "sst2", "nu.json"))), {"nu": [0.9, 0.5, 0.7]})
        self.assertEqual(len([c for c in self.ledger() if c.get("kind") == "nu"]), 1)


class WordsFolder(unittest.TestCase):
    """Runs words.py on made-up data files in a temporary folder that setUp fills."""
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()

    def tearDown(self):
        self.tmp.cleanup()

    def words(self, *args):
        return subprocess.run([sys.executable, WORDS, *args], env=dict(os.environ, ENGINE_DATA=self.tmp.name), capture_output=True, text=True)

    def assert_bad_line(self, file, line, tasks, message):
        """Appending `line` to glue/`file` makes words.py --tasks `tasks` fail with exit code 2 and one
        line matching `message` after the script's name, no traceback."""
        with open(os.path.join(self.tmp.name, "glue", file), "a") as f:
            f.write(line)
        p = self.words("--tasks", tasks)
        self.assertEqual(p.returncode, 2)
        self.assertRegex(p.stderr.strip(), r"^words.py: [^\n]*" + message)
        self.assertNotIn("Traceback", p.stderr)


class Words(WordsFolder):
    """words.py, the bag-of-words baseline, on made-up SST-2 and CoLA files."""
    def setUp(self):
        super().setUp()
        rng = random.Random(5)
        filler = [f"w{i}" for i in range(40)]
        def line(y):  # one word tells the label; the rest is noise shared by both classes
            words = rng.sample(filler, 6) + [("good" if y else "bad")]
            rng.shuffle(words)
            return " ".join(words), y
        for folder, header, fmt in (("SST-2", True, "{0}\t{1}\n"), ("CoLA", False, "src\t{1}\t\t{0}\n")):
            os.makedirs(os.path.join(self.tmp.name, "glue", folder))
            for split, n in (("train", 1200), ("dev", 200)):
                rows = [line(i % 2) for i in range(n)]
                write(os.path.join(self.tmp.name, "glue", folder, f"{split}.tsv"),
                      ("sentence\tlabel\n" if header else "") + "".join(fmt.format(t, y) for t, y in rows))

    def test_a_word_that_gives_the_label_away_is_learned_on_both_tasks(self):
        p = self.words("--tasks", "sst2,cola", "--samples", "2")
        self.assertEqual(p.returncode, 0, p.stderr)
        rows = {l.split("|")[1].strip(): [c.strip() for c in l.split("|")[3:5]] for l in p.stdout.splitlines()[2:]}
        self.assertEqual(rows["the full training set"], ["100.0", "100.0"])  # accuracy and MCC
        self.assertEqual(rows["2 samples of 1,000"], ["100.0 ± 0.0", "100.0 ± 0.0"])

    def test_mcc_is_matthews_correlation_and_f1_the_harmonic_mean(self):
        sys.path.insert(0, HERE)
        import words
        gold, pred = [1, 1, 1, 0, 0, 0, 0], [1, 1, 0, 1, 0, 0, 0]
        mean = lambda v: sum(v) / len(v)
        g, q = mean(gold), mean(pred)  # MCC is Pearson's correlation of the two 0/1 vectors
        pearson = sum((a - g) * (b - q) for a, b in zip(gold, pred)) / (sum((a - g) ** 2 for a in gold) * sum((b - q) ** 2 for b in pred)) ** 0.5
        self.assertAlmostEqual(words.metric("mcc", gold, pred), pearson, places=12)
        self.assertEqual(words.metric("mcc", gold, [1] * 7), 0.0)  # a constant answer
        self.assertAlmostEqual(words.metric("accuracy", gold, pred), 5 / 7)
        precision, recall = 2 / 3, 2 / 3  # of the three predicted 1s two are right; of the three true 1s two are found
        self.assertAlmostEqual(words.metric("f1", gold, [1, 1, 0, 1, 0, 0, 0]), 2 * precision * recall / (precision + recall))
        self.assertAlmostEqual(words.metric("f1", gold, [1, 0, 0, 0, 0, 0, 0]), 2 * 1 * (1 / 3) / (1 + 1 / 3))

    def test_a_bad_line_is_one_message_naming_the_file_and_line(self):
        self.assert_bad_line("CoLA/train.tsv", "src\tmaybe\t\tA sentence.\n", "sst2,cola", r"CoLA/train.tsv line 1201: expected .*label in column 2$")


class WordOverlap(WordsFolder):
    """words.py's word-overlap baseline, on made-up MRPC, RTE and STS-B files whose label is how many
    words the two sentences share."""
    def setUp(self):
        super().setUp()
        rng = random.Random(7)
        vocab = [f"w{i}" for i in range(200)]
        def pair(shared):  # six words each, `shared` of them in both
            a = rng.sample(vocab, 12)
            first, second = a[:6], a[:shared] + a[6:12 - shared]
            rng.shuffle(second)
            return " ".join(first) + ".", " ".join(second).capitalize() + "."
        layouts = {  # folder: (header, line from (first, second, label), label from the number shared)
            "MRPC": ("\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\n", lambda a, b, y: f"{y}\t1\t2\t{a}\t{b}\n", lambda k: int(k >= 4)),
            "RTE": ("index\tsentence1\tsentence2\tlabel\n", lambda a, b, y: f"0\t{a}\t{b}\t{y}\n", lambda k: "entailment" if k >= 3 else "not_entailment"),
            "STS-B": ("index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n",
                      lambda a, b, y: f"0\tg\tf\t2012\t1\tnone\tnone\t{a}\t{b}\t{y}\n", lambda k: f"{5 * k / 6:.3f}"),
        }
        for folder, (header, line, label) in layouts.items():
            os.makedirs(os.path.join(self.tmp.name, "glue", folder))
            for split, n in (("train", 1100), ("dev", 150)):
                rows = []
                for i in range(n):
                    k = i % 7
                    rows.append(line(*pair(k), label(k)))
                write(os.path.join(self.tmp.name, "glue", folder, f"{split}.tsv"), header + "".join(rows))

    def test_overlap_that_gives_the_label_away_is_learned_on_each_pair_task(self):
        p = self.words("--tasks", "mrpc,rte,stsb", "--samples", "2")
        self.assertEqual(p.returncode, 0, p.stderr)
        lines = p.stdout.splitlines()
        self.assertIn("MRPC F1 | RTE acc | STS-B Pearson", lines[0])
        rows = {l.split("|")[1].strip(): [c.strip() for c in l.split("|")[3:6]] for l in lines[2:]}
        self.assertEqual(rows["the full training set"], ["100.0", "100.0", "100.0"])
        self.assertEqual(rows["2 samples of 1,000"], ["100.0 ± 0.0", "100.0 ± 0.0", "100.0 ± 0.0"])

    def test_the_threshold_is_the_most_accurate_one_on_the_training_rows(self):
        sys.path.insert(0, HERE)
        import words
        # One feature's fit cannot separate these; the threshold must still be the best cut of the fitted values.
        rows = [(("a b c", "a b c"), 1), (("a b c", "a b d"), 1), (("a b c", "a e f"), 0), (("a b c", "d e f"), 0), (("a b c", "a b d"), 0)]
        w, threshold = words.fit(rows)
        fitted = [sum(a * b for a, b in zip(w, words.overlap(p))) for p, _ in rows]
        accuracy = lambda t: sum((v >= t) == bool(y) for v, (_, y) in zip(fitted, rows))
        self.assertEqual(accuracy(threshold), max(accuracy(t) for t in fitted + [math.inf]))
        self.assertIsNone(words.fit([(("a b", "a c"), 0.5), (("a b", "a b"), 3.0), (("a b", "c d"), 0.0)])[1])

    def test_a_bad_label_is_one_message_naming_the_file_and_line(self):
        self.assert_bad_line("RTE/dev.tsv", "9\tA premise.\tA hypothesis.\tmaybe\n", "rte", r"RTE/dev.tsv line 152: expected .*label in column 4$")


if __name__ == "__main__":
    unittest.main()
