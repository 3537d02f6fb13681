"""Generated-world figures: generation time, probe accuracy and sound-picture sync.

    OMP_NUM_THREADS=1 python benchmarks/synth.py --n 200
Baselines in the same script: chance accuracy (1/classes) and the shuffled-pair win rate (0.5).
"""

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

root = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(root))
sys.path.insert(0, str(root / "tests"))

from test_synth import measure_probe, measure_sync  # noqa: E402

from avssl.synth import generate_world  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--n", type=int, default=200)
ap.add_argument("--gen", default="tiny")
a = ap.parse_args()
tmp = Path(tempfile.mkdtemp())
t = time.perf_counter()
info = generate_world(tmp / "w", a.gen, 0, workers=2, progress=False)
print(f"| generate {a.gen} ({info.num_clips} clips, 2 workers) | {time.perf_counter() - t:.1f} s |")
shutil.rmtree(tmp)
for preset in ("tiny", "default"):
    acc = measure_probe(preset, a.n)
    win, win_same = measure_sync(preset, a.n // 2)
    print(f"| {preset} probe acc (source class, n={a.n}) | {acc:.3f} (chance 0.100) |")
    print(f"| {preset} sync win rate vs shuffled (all / same class, n={a.n // 2}) | {win:.3f} / {win_same:.3f} (chance 0.5) |")
