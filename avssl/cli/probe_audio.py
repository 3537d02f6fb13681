"""``avssl-probe-audio``: audio classification, a linear probe on frozen audio-encoder features, ESC-50 5-fold cross-validation.

    avssl-probe-audio --esc50 data/world/default/esc50 --init avssl --checkpoint runs/avid_embedded_cpu
    avssl-probe-audio --esc50 data/ESC-50 --init avid --checkpoint AVID_Audioset_Cross-N1024.pth.tar \
        --duration 2 --clips-per-file 10 --layer block4 --classifier svm
    avssl-probe-audio --esc50 data/world/tiny/esc50 --init scratch --audio tiny
"""

import argparse
import json
import logging
from pathlib import Path

import torch

from avssl.downstream.audio_probe import audio_probe
from avssl.downstream.finetune import load_pretrained_av_model
from avssl.utils.cli import run_main


def run(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--esc50", required=True, help="ESC-50-style root (audio/, meta/esc50.csv)")
    ap.add_argument("--init", choices=["scratch", "avssl", "avid"], default="scratch")
    ap.add_argument("--checkpoint", help="avssl pretraining checkpoint (file or run dir) or released AVID .pth.tar")
    ap.add_argument("--audio", default="avid_conv2d", help="audio encoder name for --init scratch")
    ap.add_argument("--layer", default="pool", help="feature map name (encoder.forward_features)")
    ap.add_argument("--pool", choices=["avg", "max"], default="avg")
    ap.add_argument("--sample-rate", type=int, default=24000)
    ap.add_argument("--duration", type=float, default=2.0, help="seconds per window (AVID: 2)")
    ap.add_argument("--clips-per-file", type=int, default=1, help="evenly spaced windows averaged per file")
    ap.add_argument("--classifier", choices=["svm", "logreg"], default="svm")
    ap.add_argument("--C", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--out", help="write the result JSON here")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

    torch.manual_seed(args.seed)
    if args.init == "scratch":
        from avssl.models import build_audio_encoder

        encoder = build_audio_encoder(args.audio)
    else:
        encoder = load_pretrained_av_model(args.init, args.checkpoint).audio_model
    out = audio_probe(encoder, args.esc50, classifier=args.classifier, C=args.C, seed=args.seed,
                      sample_rate=args.sample_rate, duration=args.duration, clips_per_file=args.clips_per_file,
                      layer=args.layer, pool=args.pool, batch_size=args.batch_size, device=args.device)
    out.update(init=args.init, checkpoint=args.checkpoint, layer=args.layer)
    text = json.dumps(out, indent=1)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
    return out


def main() -> None:
    run_main(run)  # a user mistake: one line, exit 2 (--debug: traceback)


if __name__ == "__main__":
    main()
