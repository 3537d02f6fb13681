"""``avssl-export``: write a trained model as ``model.safetensors`` + ``config.yaml`` (model config, clip
spec, transforms, method, training summary), which ``avssl.load_model(OUT_DIR)`` and every command's
``checkpoint=`` read back to the same numbers. The weights file holds tensors only (safetensors).

    avssl-export runs/cma_kinetics export/cma_kinetics
    avssl-export runs/tiny/checkpoints/step_00000004.pt export/tiny
"""

from __future__ import annotations

import argparse

from avssl.utils.cli import run_main


def run(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("source", help="run directory (its newest checkpoint), checkpoint file, or an earlier export")
    ap.add_argument("out_dir", help="folder to write model.safetensors and config.yaml into")
    a = ap.parse_args(argv)
    from avssl.pretrained import load_model

    model = load_model(a.source)
    out = model.save_pretrained(a.out_dir)
    info = model.info
    print(f"exported {info.get('method') or 'model'} (step {info.get('global_step')}) from {a.source} to {out}: "
          f"model.safetensors + config.yaml; load it with avssl.load_model({str(out)!r})")
    return 0


def main() -> None:
    run_main(run)  # a user mistake: one line, exit 2 (--debug: traceback)


if __name__ == "__main__":
    main()
