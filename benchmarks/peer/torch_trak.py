"""PyTorch + TRAK peer of ``ntk.approx.projected_features_fn`` on the CIFAR ResNet-18.

Run by ``benchmarks/bench_real.py`` with ``.venv-peer/bin/python`` (``make peer``); it never
imports the main package. One call::

    .venv-peer/bin/python benchmarks/peer/torch_trak.py '{"n": 32, "k": 1024,
        "proj_type": "rademacher", "threads": 2, "repeats": 2}'

prints one JSON line: per-example gradients of ``(1/sqrt O) sum_i f_i(x)`` by ``torch.func``
(``vmap(grad(functional_call))``, BatchNorm in eval mode), flattened to ``(N, P)`` and
projected to ``(N, k)`` by TRAK's ``BasicProjector`` on the CPU. Times are medians of
``repeats`` calls after a warm-up call (``repeats=0``: the warm-up call's time); the projector is built once, outside the timing
(TRAK builds it once per run too). ``peak_mb`` is the process's ``VmHWM``.
"""
from __future__ import annotations

import json
import math
import os
import sys
import time


def _peak_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def resnet18(num_classes: int = 10, width: int = 64):
    """CIFAR ResNet-18 (3x3 stem, no max-pool; four stages of two basic blocks; widths
    w, 2w, 4w, 8w; 1x1 convolution + BatchNorm shortcuts where the shape changes)."""
    from torch import nn

    class Block(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.shortcut = nn.Sequential()
            if stride != 1 or cin != cout:
                self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                              nn.BatchNorm2d(cout))

        def forward(self, x):
            y = self.bn2(self.conv2(nn.functional.relu(self.bn1(self.conv1(x)))))
            return nn.functional.relu(y + self.shortcut(x))

    class ResNet18(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(3, width, 3, 1, 1, bias=False),
                                      nn.BatchNorm2d(width), nn.ReLU())
            blocks, cin = [], width
            for stage, mult in enumerate((1, 2, 4, 8)):
                for j in range(2):
                    stride = 2 if stage > 0 and j == 0 else 1
                    blocks.append(Block(cin, width * mult, stride))
                    cin = width * mult
            self.blocks = nn.Sequential(*blocks)
            self.head = nn.Linear(cin, num_classes)

        def forward(self, x):
            return self.head(self.blocks(self.stem(x)).mean(dim=(2, 3)))

    return ResNet18()


def run(spec: dict) -> dict:
    import torch
    from torch.func import functional_call, grad, vmap
    from trak.projectors import BasicProjector, ProjectionType

    threads = int(spec.get("threads") or os.cpu_count())
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    n, k, repeats = spec["n"], spec["k"], spec.get("repeats", 2)
    num_classes = 10
    model = resnet18(num_classes, int(spec.get("width", 64))).eval()
    params = {name: p.detach() for name, p in model.named_parameters()}
    buffers = {name: b.detach() for name, b in model.named_buffers()}
    n_params = sum(p.numel() for p in params.values())
    x = torch.randn(n, 3, 32, 32)

    def summed(prm, xi):
        out = functional_call(model, (prm, buffers), (xi[None],))
        return out.sum() / math.sqrt(num_classes)

    per_example = vmap(grad(summed), in_dims=(None, 0))
    proj_type = ProjectionType(spec["proj_type"])
    base = _rss_mb()
    t0 = time.perf_counter()
    projector = BasicProjector(grad_dim=n_params, proj_dim=k, seed=0, proj_type=proj_type,
                               device="cpu")
    setup_s = time.perf_counter() - t0

    def call():
        t = time.perf_counter()
        grads = per_example(params, x)
        flat = torch.cat([g.reshape(n, -1) for g in grads.values()], dim=1)
        del grads
        t_grad = time.perf_counter() - t
        feats = projector.project(flat, model_id=0)
        return feats, t_grad, time.perf_counter() - t

    with torch.no_grad():
        t = time.perf_counter()
        feats, *call_first = call()
        warmup_s = time.perf_counter() - t
        peak = _peak_mb() - base
        runs = [call()[1:] for _ in range(repeats)] or [call_first]
    runs.sort(key=lambda r: r[1])
    grad_s, total_s = runs[len(runs) // 2]
    return {"n": n, "k": k, "proj_type": spec["proj_type"], "threads": threads,
            "n_params": n_params, "time_s": total_s, "grad_time_s": grad_s,
            "project_time_s": total_s - grad_s, "warmup_s": warmup_s,
            "projector_setup_s": setup_s, "peak_extra_mb": round(peak, 1),
            "output_shape": list(feats.shape), "torch": torch.__version__,
            "traker": _version("traker")}


def _version(name: str) -> str:
    try:
        from importlib.metadata import version
        return version(name)
    except Exception:  # noqa: BLE001 - a version string is informative only
        return "unknown"


if __name__ == "__main__":
    print(json.dumps(run(json.loads(sys.argv[1]))))
