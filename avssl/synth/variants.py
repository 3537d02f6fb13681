"""Sound that does not belong to the picture: a test collection made from a generated world.

The world already holds two kinds of clips whose sound is not their visible source: ``offscreen``
(the sounding object is never on screen) and ``silent`` (background noise only, about -50 dBFS).
`write_av_variants` adds two more, made the way they happen in real collections, and writes every
clip of the world (or of one split) into one folder:

* ``dubbed``: the picture of one clip with the whole sound track of another clip whose sounding
  object is of another class (a swapped / unrelated track);
* ``muted``: the picture with a digitally silent track (all zeros).

Clips kept as they are (``normal``, ``offscreen``, ``silent``) are hard-linked; the new ones are
re-rendered from the world's seed (`synthesize_clip`, exact frames) and encoded with the world's own
writer. ``variants.csv`` lists ``clip_id, path, kind, audio_from`` (``audio_from``: the clip whose
sound a dubbed clip plays).
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np

KINDS = ("normal", "offscreen", "silent", "dubbed", "muted")
VARIANTS_CSV = "variants.csv"


def _kind(row: dict) -> str:
    return "offscreen" if int(row["offscreen"]) else "silent" if int(row["silent"]) else "normal"


def plan_variants(rows: list[dict], *, dubbed_share: float = 0.15, muted_share: float = 0.1,
                  seed: int = 0) -> list[dict]:
    """``[{"clip_id", "index", "kind", "audio_from"}]``: seeded choice of ``normal`` clips to dub or
    mute (shares of all ``rows``); a dubbed clip takes the track of a clip with a sound of another
    class (never a silent or muted one)."""
    if dubbed_share < 0 or muted_share < 0 or dubbed_share + muted_share > 1:
        raise ValueError("dubbed_share and muted_share must be >= 0 and sum to at most 1")
    rng = np.random.default_rng(seed)
    kinds = [_kind(r) for r in rows]
    normal = np.flatnonzero(np.array(kinds) == "normal")
    n_dub, n_mute = int(round(dubbed_share * len(rows))), int(round(muted_share * len(rows)))
    if n_dub + n_mute > len(normal):
        raise ValueError(f"{n_dub} dubbed + {n_mute} muted clips asked, only {len(normal)} normal clips")
    pick = rng.permutation(normal)
    dub, mute = set(pick[:n_dub].tolist()), set(pick[n_dub:n_dub + n_mute].tolist())
    donors = [i for i, k in enumerate(kinds) if k in ("normal", "offscreen") and i not in mute]
    out = []
    for i, r in enumerate(rows):
        kind, src = kinds[i], ""
        if i in dub:
            other = [j for j in donors if rows[j]["source_class"] != r["source_class"] and j not in dub]
            if not other:
                raise ValueError(f"no clip with a sound of another class than {r['source_class']} to dub with")
            src, kind = rows[int(rng.choice(other))]["clip_id"], "dubbed"
        elif i in mute:
            kind = "muted"
        out.append({"clip_id": r["clip_id"], "index": int(r["index"]), "kind": kind, "audio_from": src})
    return out


def write_av_variants(world_dir, out_dir, *, split: str | None = None, dubbed_share: float = 0.15,
                      muted_share: float = 0.1, seed: int = 0, progress: bool = True) -> Path:
    """Write the world's clips (all, or those of ``split``) with dubbed and muted variants into
    ``out_dir/videos/`` and list them in ``out_dir/variants.csv`` (returned). Idempotent for the
    same arguments (files are rewritten)."""
    import soundfile as sf
    from tqdm.auto import tqdm

    from avssl.io.writer import write_av

    from .export import _link
    from .generate import load_world, synthesize_clip
    from .world import world_assignments

    world = load_world(world_dir)
    rows = [r for r in world.rows() if split is None or r["split"] == split]
    if not rows:
        raise ValueError(f"{world_dir}: no clips{f' in split {split!r}' if split else ''}")
    plan = plan_variants(rows, dubbed_share=dubbed_share, muted_share=muted_share, seed=seed)
    out_dir = Path(out_dir)
    (out_dir / "videos").mkdir(parents=True, exist_ok=True)
    by_id = {r["clip_id"]: r for r in rows}
    labels = world_assignments(world.preset.num_clips, world.seed, world.preset)
    listed = []
    for p in tqdm(plan, desc="variants", unit="clip", disable=not progress):
        r = by_id[p["clip_id"]]
        dst = out_dir / "videos" / f"{r['clip_id']}{r['container']}"
        if p["kind"] in ("dubbed", "muted"):
            frames, audio, gt = synthesize_clip(p["index"], world.seed, world.preset, labels)
            if p["kind"] == "dubbed":
                donor, rate = sf.read(str(world.root / "wav" / f"{p['audio_from']}.wav"), dtype="float32",
                                      always_2d=True)
                track = np.zeros_like(audio)  # the donor's track, cut / zero-padded to this clip's length
                n = min(track.shape[1], donor.shape[0])
                track[:, :n] = donor[:n].T[: track.shape[0]]
                if rate != gt["audio_rate"]:
                    raise ValueError(f"{p['audio_from']}.wav: {rate} Hz, the clip {gt['audio_rate']} Hz")
            else:
                track = np.zeros_like(audio)
            dst.unlink(missing_ok=True)
            write_av(dst, frames, gt["fps"], track, gt["audio_rate"], crf=world.preset.crf)
        else:
            _link(world.root / r["path"], dst)
        listed.append({**p, "path": os.path.relpath(dst, out_dir)})
    csv_path = out_dir / VARIANTS_CSV
    with open(csv_path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["clip_id", "path", "kind", "audio_from", "index"])
        w.writeheader()
        w.writerows(listed)
    return csv_path


def read_variants(out_dir) -> list[dict]:
    """Rows of ``variants.csv`` with ``path`` made absolute."""
    out_dir = Path(out_dir)
    with open(out_dir / VARIANTS_CSV, newline="") as f:
        return [{**r, "path": str(out_dir / r["path"])} for r in csv.DictReader(f)]
