#!/usr/bin/python3
"""Reference values for Engine.Optim, computed by PyTorch in float64.

Writes tests/Engine.Tests/Fixtures/optim_reference.json. Run it with Debian's PyTorch
(python3-torch; the fixture was made with torch 1.13):

    /usr/bin/python3 tools/reference/optim_reference.py

Everything the C# tests need to replay a run is written into the fixture: the initial
parameter values and the gradient of every parameter at every step (drawn from a seeded
torch generator here, so C# never has to reproduce torch's random numbers). A gradient of
null means "no gradient this step" (torch skips such a parameter and does not count the
step for it). After each step the fixture holds every parameter's value, the learning rate
the step used and, where clipping is on, the total norm clip_grad_norm_ returned.

Runs:
  adamw_plain  torch.optim.AdamW, constant lr, weight decay on every parameter; parameter
               "late" has no gradient on step 1 (its bias correction counts its own steps).
  adamw_full   AdamW with two parameter groups (weight decay off for the 1-D "b"), a
               linear-warmup-then-decay schedule through LambdaLR, and clip_grad_norm_
               before every step (gradients scaled per step so that some steps clip and
               some do not).
  sgd_nesterov torch.optim.SGD with momentum, nesterov and weight decay.
  sgd_dampened SGD with momentum, dampening and weight decay (no nesterov).
  schedules    the Hugging Face schedule multipliers (get_constant_schedule_with_warmup,
               get_linear_schedule_with_warmup, get_cosine_schedule_with_warmup with
               num_cycles 0.5) at steps 0..14, written out here as in transformers'
               optimization.py, and the learning rates LambdaLR actually produced.
"""

import json
import math
import os

import torch

torch.set_default_dtype(torch.float64)

STEPS = 5


def initial_parameters():
    """Three small parameters with fixed, formula-made values."""
    w = torch.tensor([[0.5 * math.sin(0.9 * i + 0.3 * j) for j in range(4)] for i in range(3)])
    b = torch.tensor([0.1 * (j - 1.5) for j in range(4)])
    late = torch.tensor([[0.25, -0.75], [1.5, -0.125]])
    return {"w": w, "b": b, "late": late}


def gradient_sequence(params, seed, scales, late_missing_first):
    """Gradients for each step: standard normal draws times a per-step scale."""
    g = torch.Generator().manual_seed(seed)
    steps = []
    for s in range(STEPS):
        step = {}
        for name, p in params.items():
            draw = torch.randn(p.shape, generator=g, dtype=torch.float64) * scales[s]
            step[name] = None if (late_missing_first and name == "late" and s == 0) else draw
        steps.append(step)
    return steps


def to_list(t):
    return None if t is None else t.reshape(-1).tolist()


def shapes(params):
    return {name: list(p.shape) for name, p in params.items()}


# ------------------------------------------------------------------ HF schedule multipliers

def constant_with_warmup(warmup):
    return lambda step: step / max(1.0, warmup) if step < warmup else 1.0


def linear_warmup_decay(warmup, total):
    def f(step):
        if step < warmup:
            return step / max(1, warmup)
        return max(0.0, (total - step) / max(1, total - warmup))
    return f


def cosine_with_warmup(warmup, total, cycles=0.5):
    def f(step):
        if step < warmup:
            return step / max(1, warmup)
        progress = (step - warmup) / max(1, total - warmup)
        return max(0.0, 0.5 * (1.0 + math.cos(math.pi * cycles * 2.0 * progress)))
    return f


# ------------------------------------------------------------------ runs

def run(make_optimizer, grads, schedule=None, clip=None):
    params = {name: torch.nn.Parameter(p.clone()) for name, p in initial_parameters().items()}
    opt = make_optimizer(params)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule) if schedule else None
    out = {"params": [], "lrs": [], "norms": []}
    for step in grads:
        for name, p in params.items():
            p.grad = None if step[name] is None else step[name].clone()
        out["lrs"].append(opt.param_groups[0]["lr"])
        if clip is not None:
            norm = torch.nn.utils.clip_grad_norm_(list(params.values()), clip)
            out["norms"].append(norm.item())
        opt.step()
        if sched:
            sched.step()
        out["params"].append({name: to_list(p.detach()) for name, p in params.items()})
    if clip is None:
        del out["norms"]
    return out


def main():
    init = initial_parameters()
    fixture = {
        "torch_version": torch.__version__,
        "shapes": shapes(init),
        "initial": {name: to_list(p) for name, p in init.items()},
    }

    plain = {"lr": 1e-2, "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.1}
    grads = gradient_sequence(init, seed=1, scales=[1.0] * STEPS, late_missing_first=True)
    result = run(lambda ps: torch.optim.AdamW(list(ps.values()), lr=plain["lr"], betas=tuple(plain["betas"]),
                                              eps=plain["eps"], weight_decay=plain["weight_decay"], foreach=False),
                 grads)
    fixture["adamw_plain"] = {**plain, "grads": [{n: to_list(g) for n, g in s.items()} for s in grads], **result}

    full = {"lr": 5e-2, "betas": [0.8, 0.95], "eps": 1e-6, "weight_decay": 0.2, "no_decay": ["b"],
            "warmup": 2, "total": 6, "max_norm": 1.0}
    grads = gradient_sequence(init, seed=2, scales=[0.5, 0.05, 2.0, 0.1, 3.0], late_missing_first=False)

    def make_full(ps):
        groups = [{"params": [p for n, p in ps.items() if n not in full["no_decay"]], "weight_decay": full["weight_decay"]},
                  {"params": [p for n, p in ps.items() if n in full["no_decay"]], "weight_decay": 0.0}]
        return torch.optim.AdamW(groups, lr=full["lr"], betas=tuple(full["betas"]), eps=full["eps"], foreach=False)

    result = run(make_full, grads, schedule=linear_warmup_decay(full["warmup"], full["total"]), clip=full["max_norm"])
    fixture["adamw_full"] = {**full, "grads": [{n: to_list(g) for n, g in s.items()} for s in grads], **result}

    for key, cfg, seed in [
        ("sgd_nesterov", {"lr": 0.1, "momentum": 0.9, "dampening": 0.0, "weight_decay": 0.01, "nesterov": True}, 3),
        ("sgd_dampened", {"lr": 0.05, "momentum": 0.8, "dampening": 0.3, "weight_decay": 0.02, "nesterov": False}, 4),
    ]:
        grads = gradient_sequence(init, seed=seed, scales=[1.0] * STEPS, late_missing_first=False)
        result = run(lambda ps: torch.optim.SGD(list(ps.values()), lr=cfg["lr"], momentum=cfg["momentum"],
                                                dampening=cfg["dampening"], weight_decay=cfg["weight_decay"],
                                                nesterov=cfg["nesterov"], foreach=False),
                     grads)
        fixture[key] = {**cfg, "grads": [{n: to_list(g) for n, g in s.items()} for s in grads], **result}

    # Schedules: the multipliers at steps 0..14, and the learning rates LambdaLR set (base lr 2.0).
    warmup, total, base = 4, 12, 2.0
    named = {
        "constant_with_warmup": constant_with_warmup(warmup),
        "linear_warmup_decay": linear_warmup_decay(warmup, total),
        "cosine_with_warmup": cosine_with_warmup(warmup, total),
    }
    schedules = {"warmup": warmup, "total": total, "base_lr": base}
    for name, f in named.items():
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=base)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, f)
        lrs = []
        for _ in range(15):
            lrs.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
        schedules[name] = {"multipliers": [f(t) for t in range(15)], "lrs": lrs}
    fixture["schedules"] = schedules

    here = os.path.dirname(os.path.abspath(__file__))
    path = os.path.join(here, "..", "..", "tests", "Engine.Tests", "Fixtures", "optim_reference.json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(fixture, f, indent=1)
        f.write("\n")
    print("wrote", os.path.normpath(path))


if __name__ == "__main__":
    main()
