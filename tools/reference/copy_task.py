#!/usr/bin/env python3
"""A synthetic copy task for masked-LM pretraining, and an independent PyTorch BERT to run it.

    copy_task.py make OUT.txt                      the corpus: 4,000 documents of 8 random words
                                                   (from 64 common ones) written twice, blank-line separated
    copy_task.py bert OUT.txt VOCAB.txt [STEPS] [LR]   trains a post-LayerNorm BertForMaskedLM (the
                                                   architecture of transformers' BERT, written here
                                                   from its definition) on the same packing and
                                                   masking as `engine pretrain`, and prints the loss
                                                   and held-out MLM accuracy every 100 steps

A masked word in the second half of a document is the word 8 positions earlier, so a model that
attends learns the task completely; one that only counts words stays at ln 64 = 4.16 nats. It is a
fast probe of whether a pretraining recipe learns to use context at all. The engine's side:

    engine pretrain --arch bert --config tiny.json --tokenizer VOCAB.txt --corpus OUT.txt \
        --steps 400 --seq 34 --batch 32 --lr 2e-3 --out RUN

with tiny.json = 2 layers, width 64, 2 heads, FFN 256, no dropout (docs/pretraining.md). Run with
Debian's python3 (apt-get install python3-torch); one thread, ~1 s per step (the 30,522-word head).
"""
import math
import random
import sys

WORDS = sorted(set((
    "the of and to in is was for on as with by he at from his an were are which this be or had first one their its new "
    "after but who not they have her she two been other when there all during into school time may years more most only "
    "over city some world would where later up such used many him can state about national out known university united "
    "then made").split()))[:64]


def make(path):
    rng = random.Random(0)
    with open(path, "w") as f:
        for _ in range(4000):
            s = [rng.choice(WORDS) for _ in range(8)]
            f.write(" ".join(s + s) + "\n\n")


def bert(path, vocab_path, steps=400, lr=2e-3):
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
    torch.manual_seed(0)
    torch.set_num_threads(1)
    vocab = {w: i for i, w in enumerate(open(vocab_path).read().split("\n"))}
    cls, sep, mask_id = vocab["[CLS]"], vocab["[SEP]"], vocab["[MASK]"]
    specials = {cls, sep, mask_id, vocab["[PAD]"], vocab["[UNK]"]}
    stream = []
    for doc in open(path).read().split("\n\n"):
        if doc.split():
            stream += [vocab[w] for w in doc.split()] + [sep]
    t = 34  # [CLS] + 33 tokens of the stream per row, as the engine packs; every 100th row held out
    rows = [[cls] + stream[i:i + t - 1] for i in range(0, len(stream) - t, t - 1)]
    held, train = rows[::100], [r for i, r in enumerate(rows) if i % 100]
    v, d, heads, layers, ffn = 30522, 64, 2, 2, 256

    def masked(row, rng):
        inp, lab = list(row), [-100] * len(row)
        for j, tok in enumerate(row):
            if tok in specials or rng.random() >= 0.15:
                continue
            lab[j] = tok
            c = rng.random()
            if c < 0.8:
                inp[j] = mask_id
            elif c < 0.9:
                inp[j] = rng.randrange(999, v)
        return inp, lab

    class Layer(nn.Module):
        def __init__(self):
            super().__init__()
            self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))
            self.i, self.out = nn.Linear(d, ffn), nn.Linear(ffn, d)
            self.ln1, self.ln2 = nn.LayerNorm(d, eps=1e-12), nn.LayerNorm(d, eps=1e-12)

        def forward(self, x):
            b, n, _ = x.shape
            split = lambda z: z.view(b, n, heads, d // heads).transpose(1, 2)
            a = torch.softmax(split(self.q(x)) @ split(self.k(x)).transpose(-1, -2) / math.sqrt(d // heads), -1) @ split(self.v(x))
            x = self.ln1(x + self.o(a.transpose(1, 2).reshape(b, n, d)))  # post-LayerNorm, as BERT
            return self.ln2(x + self.out(F.gelu(self.i(x))))

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.we, self.pe, self.te = nn.Embedding(v, d), nn.Embedding(64, d), nn.Embedding(2, d)
            self.ln = nn.LayerNorm(d, eps=1e-12)
            self.layers = nn.ModuleList(Layer() for _ in range(layers))
            self.dense, self.hln, self.bias = nn.Linear(d, d), nn.LayerNorm(d, eps=1e-12), nn.Parameter(torch.zeros(v))
            for m in self.modules():
                if isinstance(m, (nn.Linear, nn.Embedding)):
                    nn.init.normal_(m.weight, std=0.02)
                if isinstance(m, nn.Linear):
                    nn.init.zeros_(m.bias)

        def forward(self, ids):
            x = self.ln(self.we(ids) + self.pe(torch.arange(ids.shape[1]))[None] + self.te(torch.zeros_like(ids)))
            for layer in self.layers:
                x = layer(x)
            return self.hln(F.gelu(self.dense(x))) @ self.we.weight.T + self.bias  # decoder tied to the embeddings

    model = Model()
    decay = [p for p in model.parameters() if p.dim() >= 2]
    rest = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01}, {"params": rest, "weight_decay": 0.0}], lr=lr, betas=(0.9, 0.98))
    warm = max(1, int(0.02 * steps))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: (s + 1) / warm if s < warm else 0.5 * (1 + math.cos(math.pi * (s - warm) / (steps - warm))))
    eval_batch = [masked(r, random.Random(123)) for r in held]
    order = random.Random(1)
    for step in range(1, steps + 1):
        rng = random.Random(step)
        batch = [masked(train[order.randrange(len(train))], rng) for _ in range(32)]
        logits = model(torch.tensor([x for x, _ in batch]))
        loss = F.cross_entropy(logits.view(-1, v), torch.tensor([y for _, y in batch]).view(-1), ignore_index=-100)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 100 == 0:
            with torch.no_grad():
                lo = model(torch.tensor([x for x, _ in eval_batch]))
                la = torch.tensor([y for _, y in eval_batch])
                sel = la != -100
                held_loss = F.cross_entropy(lo[sel], la[sel]).item()
                acc = (lo[sel].argmax(-1) == la[sel]).float().mean().item()
            print(f"step {step}: loss {loss.item():.4f}, held-out loss {held_loss:.4f}, MLM accuracy {100 * acc:.1f}%", flush=True)


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "make":
        make(sys.argv[2])
    elif len(sys.argv) >= 4 and sys.argv[1] == "bert":
        bert(sys.argv[2], sys.argv[3], *(int(sys.argv[4]),) if len(sys.argv) > 4 else (), *(float(sys.argv[5]),) if len(sys.argv) > 5 else ())
    else:
        sys.exit(__doc__)
