"""Cost of drawing shared MC-dropout masks: blocks (what :class:`SharedMasks` does) against one
reseed per pass (what it did before: a SeedSequence hash and a torch generator reseed per pass).

Refinement runs thousands of head passes over a few hundred candidates; each pass needs one
``[D]`` mask of the head's dropout. Same run, same machine, one torch thread:

    OMP_NUM_THREADS=1 PYTHONPATH=$PWD nice -n 5 python bench/mask_draw.py --passes 7000 --width 128
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from activelabel.pipeline.prediction import SharedMasks


def per_pass(seed: int, passes: int, width: int, p: float) -> torch.Tensor:
    """The former scheme: one generator reseeded per pass from SeedSequence(seed, t, layer)."""
    generator = torch.Generator()
    out = []
    for t in range(passes):
        state = np.random.SeedSequence([seed, t, 0]).generate_state(2, np.uint32)
        generator.manual_seed(int(state[0]) << 31 ^ int(state[1]))
        out.append((torch.rand((width,), generator=generator) >= p).float() / (1.0 - p))
    return torch.stack(out)


def fastest(repeats: int, run) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--passes", type=int, default=7000)
    parser.add_argument("--width", type=int, default=128, help="D, the head's input features")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = torch.nn.Sequential(torch.nn.Dropout(0.5), torch.nn.Linear(args.width, 10))
    cpu = torch.device("cpu")
    blocks = fastest(args.repeats, lambda: SharedMasks(model, 7).masks(0, range(args.passes), (args.width,), cpu))
    old = fastest(args.repeats, lambda: per_pass(7, args.passes, args.width, 0.5))
    print(f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}; {args.passes} masks of {args.width}, "
          f"fastest of {args.repeats}:")
    print("| drawing | ms | us per pass |\n|---|---:|---:|")
    for name, seconds in (("one reseed per pass (before)", old), ("blocks of up to 1,024 passes (now)", blocks)):
        print(f"| {name} | {seconds * 1e3:.1f} | {seconds / args.passes * 1e6:.2f} |")
    print(f"\nspeed-up: {old / blocks:.0f}x")


if __name__ == "__main__":
    main()
