"""Share of a training step spent in the objective (loss + memory bank) vs the encoders.

Times, on one thread: AVIDCriterion forward+backward+bank update at batch 32 with a
10^5-slot bank, 1024 negatives, dim 128; and forward+backward of the AVID R(2+1)D-18
video net + Conv2D audio net + projection heads at the reference input (8x112x112
video, 1x200x257 log-spectrogram). The encoders are timed at --model-batch (default 4)
and scaled linearly to batch 32 (convolution cost is linear in the batch), which is
stated in the output.

    OMP_NUM_THREADS=1 python benchmarks/objective.py [--model-batch 4] [--reps 5]
"""
import argparse
import time

import torch

from avssl.methods import AVIDCriterion, CMACriterion


def timeit(fn, reps):
    fn()  # warm-up
    best = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        best.append(time.perf_counter() - t0)
    best.sort()
    return best[len(best) // 2]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--num-items", type=int, default=100_000)
    ap.add_argument("--negatives", type=int, default=1024)
    ap.add_argument("--model-batch", type=int, default=4)
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--size", type=int, default=112)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    crit = AVIDCriterion(args.num_items, 128, num_negatives=args.negatives)
    v = torch.randn(args.batch, 128, requires_grad=True)
    a = torch.randn(args.batch, 128, requires_grad=True)

    def objective_step(c=crit):
        idx = torch.randint(0, args.num_items, (args.batch,))
        loss, _ = c(v, a, idx)
        loss.backward()

    t_obj = timeit(objective_step, args.reps)
    cma = CMACriterion.from_avid(crit)
    # any valid positive table has the same cost: the 32 following ids of each instance
    cma.set_positives((torch.arange(args.num_items).unsqueeze(1) + 1 + torch.arange(32)) % args.num_items)
    t_cma = timeit(lambda: objective_step(cma), args.reps)

    from avssl.models import avid_conv2d, avid_r2plus1d_18, ProjectionHead
    video, audio = avid_r2plus1d_18(), avid_conv2d()
    vh, ah = ProjectionHead(512), ProjectionHead(512)
    mb = args.model_batch
    x_v = torch.randn(mb, 3, args.frames, args.size, args.size)
    x_a = torch.randn(mb, 1, 200, 257)

    def model_step():
        out = vh(video(x_v)).sum() + ah(audio(x_a)).sum()
        out.backward()

    t_model_mb = timeit(model_step, max(1, args.reps // 2))
    t_model = t_model_mb * args.batch / mb
    print(f"threads={args.threads} batch={args.batch} N={args.num_items} K={args.negatives} dim=128")
    print(f"AVID criterion fwd+bwd+bank update: {t_obj * 1e3:.1f} ms")
    print(f"CMA criterion fwd+bwd+bank update (k=32, 64 within): {t_cma * 1e3:.1f} ms")
    print(f"encoders+heads fwd+bwd at batch {mb}: {t_model_mb:.2f} s -> batch {args.batch} "
          f"(linear scaling): {t_model:.2f} s  [video {args.frames}x{args.size}x{args.size}, audio 1x200x257]")
    print(f"objective share of step (AVID): {100 * t_obj / (t_obj + t_model):.3f} %")
    print(f"objective share of step (CMA):  {100 * t_cma / (t_cma + t_model):.3f} %")


if __name__ == "__main__":
    main()
