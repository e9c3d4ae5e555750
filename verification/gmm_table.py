"""The T12 calibration table: ``python -m verification.gmm_table --out DIR [--d 8 80] [--problems 20] ...``.

For each ``(d, d_y, problem)`` of the MCGdiff protocol (:mod:`linear_model.gmm_benchmark`) and each step
count, runs the oracle, DPS and PSLD through :func:`psld.sample` (``eta = 1``, and ``eta = 0`` where asked)
and the MCGdiff-code DPS reference (its ``eta``: 0.6 at 20 steps, 0.85 otherwise, ``zeta = 0.1``), and
writes one JSON line per run to ``DIR/runs.jsonl`` (sliced W1 to exact posterior draws, mode-weight TV,
the instance's effective number of modes) and the aggregated ``DIR/table.md`` (mean ± 1.96 sd/sqrt(n)).
LDPS and GML are not run: with an orthonormal linear decoder they draw DPS's samples (checked by T12).
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from pathlib import Path

import torch

from linear_model.gmm_benchmark import mcgdiff_problem, mean_ci, mode_weights, sliced_wasserstein
from verification.gmm_methods import (
    mcgdiff_alphas_cumprod,
    mcgdiff_dps,
    mcgdiff_timesteps,
    run_method,
    tv_distance,
)

F64 = torch.float64


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed))


def run_problem(d: int, d_y: int, i: int, *, n: int, steps, etas, omega: float, gamma: float) -> list[dict]:
    """All runs on one instance (seeded by ``d``, ``d_y``, ``i``)."""
    p = mcgdiff_problem(d, d_y, gen(10_000 * d + 100 * d_y + i))
    ref = p.posterior.sample(n, gen(i + 1))
    base = dict(d=d, d_y=d_y, problem=i, sigma_y=p.sigma_y, modes=p.posterior.effective_modes())
    floor = sliced_wasserstein(p.posterior.sample(n, gen(i + 2)), ref, generator=gen(i + 3))
    rows = [dict(base, method="exact (MC floor)", steps=0, eta=float("nan"), sw=floor, tv=0.0, seconds=0.0)]

    def record(method, num_steps, eta, z, seconds):
        sw = sliced_wasserstein(z, ref, generator=gen(i + 3))
        tv = tv_distance(mode_weights(z, p.posterior), p.posterior.weights)
        rows.append(dict(base, method=method, steps=num_steps, eta=eta, sw=sw, tv=tv, seconds=seconds))

    ac = mcgdiff_alphas_cumprod()
    for num_steps in steps:
        for method in ("oracle", "dps", "psld"):
            for eta in etas if method != "oracle" else (1.0,):
                start = time.perf_counter()
                z, _ = run_method(
                    p,
                    method,
                    num_steps=num_steps,
                    eta=eta,
                    n=n,
                    generator=gen(i + 4),
                    omega=omega,
                    gamma=gamma,
                )
                record(method, num_steps, eta, z, time.perf_counter() - start)
        eta = 0.6 if num_steps <= 20 else 0.85
        ts = mcgdiff_timesteps(ac, p.singular_values, num_steps, p.sigma_y**2)
        start = time.perf_counter()
        z = mcgdiff_dps(
            p.prior, p.A, p.y, n=n, eta=eta, timesteps=ts, alphas_cumprod=ac, generator=gen(i + 4), zeta=0.1
        )
        record("dps (MCGdiff code)", num_steps, eta, z, time.perf_counter() - start)
    return rows


def aggregate(rows: list[dict]) -> str:
    """Markdown table: one line per (d, d_y, steps), one column per (method, eta), mean ± 1.96 sd/sqrt(n)."""
    groups: dict = defaultdict(lambda: defaultdict(list))
    cols: list = []
    modes: dict = defaultdict(list)
    for r in rows:
        fixed_eta = r["steps"] == 0 or "MCGdiff" in r["method"]  # the reference's eta is set by the steps
        col = r["method"] if fixed_eta else f"{r['method']} η={r['eta']:g}"
        if r["steps"] == 0:
            for s in sorted({x["steps"] for x in rows if x["steps"] > 0}):
                groups[(r["d"], r["d_y"], s)][col].append(r["sw"])
            modes[(r["d"], r["d_y"])].append(r["modes"])
        else:
            groups[(r["d"], r["d_y"], r["steps"])][col].append(r["sw"])
        if col not in cols:
            cols.append(col)
    head = "| d | d_y | steps | n | modes>1.5 | " + " | ".join(cols) + " |"
    out = [head, "|" + "---|" * (head.count("|") - 1)]
    for key in sorted(groups):
        d, dy, s = key
        ms = modes[(d, dy)]
        cells = []
        for c in cols:
            m, ci = mean_ci(groups[key][c]) if groups[key][c] else (float("nan"), float("nan"))
            cells.append(f"{m:.2f} ± {ci:.2f}")
        multi = sum(x > 1.5 for x in ms)
        out.append(f"| {d} | {dy} | {s} | {len(ms)} | {multi} | " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--d", type=int, nargs="+", default=[8, 80, 800])
    ap.add_argument("--dy", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--problems", type=int, nargs="+", default=[20], help="per d (one value, or one per d)")
    ap.add_argument("--samples", type=int, default=2000)
    ap.add_argument("--steps", type=int, nargs="+", default=[20, 100, 1000])
    ap.add_argument("--etas", type=float, nargs="+", default=[1.0])
    ap.add_argument("--omega", type=float, default=0.2)
    ap.add_argument("--gamma", type=float, default=0.1)
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    per = a.problems if len(a.problems) == len(a.d) else a.problems[:1] * len(a.d)
    rows: list[dict] = []
    with (out / "runs.jsonl").open("a") as f:
        for d, count in zip(a.d, per, strict=True):
            for dy in a.dy:
                for i in range(count):
                    new = run_problem(
                        d, dy, i, n=a.samples, steps=a.steps, etas=a.etas, omega=a.omega, gamma=a.gamma
                    )
                    for r in new:
                        f.write(json.dumps(r) + "\n")
                    f.flush()
                    rows.extend(new)
                    (out / "table.md").write_text(aggregate(rows))
    print(aggregate(rows))


if __name__ == "__main__":
    main()
