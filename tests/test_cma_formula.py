"""The CMA criterion (avssl.methods.CMACriterion) checked against a plain loop written from the
objective (Morgado et al., CVPR 2021; reference facebookresearch/AVID-CMA criterions/avid_cma.py):

For row b (video id i, normalised live embeddings v_b, a_b), memory banks V, A as they were BEFORE
this step, positive set P(i) (k ids), negative ids Neg_b (K ids, none equal to i or in P(i)),
W = num_negatives_within, logits s = q . x / T:

  xmodal_inst  v2a: {A[i]}    vs A[Neg_b]        a2v: {V[i]}    vs V[Neg_b]
               in_batch: {a_b} (live) vs {a_j : id_j != i} of the batch; a2v: {v_b} vs {v_j : id_j != i}
  wmodal_pos   v2v: V[P(i)]   vs V[Neg_b[:W]]    a2a: A[P(i)]   vs A[Neg_b[:W]]   (every positive)
  wmodal_inst  v2v: {V[i]}    vs V[Neg_b]        a2a: {A[i]}    vs A[Neg_b]
  xmodal_pos   v2a: A[P(i)]   vs A[Neg_b]        a2v: V[P(i)]   vs V[Neg_b]

Per row, positive set S and negative set M:
  NCE      h(s) = e^s / (e^s + |M| Z / N);  l = mean_{s in S} -log h(s) + sum_{m in M} -log(1 - h(m))
  InfoNCE  l = mean_{s in S} -log( e^s / (e^s + sum_{m in M} e^m) )
A direction's loss is the mean over rows, a group the mean of its two directions, and the total
sum_g weight_g * group_g (weights as given: 0.5 / 0.5 is the reference's normalised 1:1). After the
loss, each bank slot of the batch becomes normalize(m * old + (1 - m) * mean of its rows).

`check_against_formula` runs the module and the loop on the same inputs and negatives and compares
the total, the per-group statistics, both input gradients and the updated banks. The last tests apply
three known breakages (first positive only, all K negatives in the within-modal term, the video bank
for a2a) and show the check FAILS on each: the guard bites.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

import pytest
import torch

from avssl.methods import CMACriterion

GROUPS = ("xmodal_inst", "wmodal_pos", "wmodal_inst", "xmodal_pos")


@dataclass
class Setup:
    """One CMA configuration and the inputs of one step (small sizes, fixed seeds)."""
    loss: str = "nce"
    in_batch: bool = False
    coeffs: dict = field(default_factory=lambda: {"xmodal_inst": 0.5, "wmodal_pos": 0.5,
                                                  "wmodal_inst": 0.0, "xmodal_pos": 0.0})
    num_items: int = 50
    dim: int = 8
    num_negatives: int = 20
    within: int = 7
    k: int = 4
    temperature: float = 0.07
    momentum: float = 0.5
    log_z: float | None = math.log(30.0)  # None: left unset, estimated by the criterion on this batch
    ids: tuple = (3, 17, 3, 41, 0, 29)  # a repeated id: two clips of one video in the batch
    seed: int = 0

    def build(self) -> tuple[CMACriterion, torch.Tensor]:
        """A criterion with random (seeded, non-trivial) banks and installed positive sets."""
        cma = CMACriterion(self.num_items, dim=self.dim, num_negatives=self.num_negatives,
                           num_negatives_within=self.within, temperature=self.temperature,
                           momentum=self.momentum, loss=self.loss, in_batch=self.in_batch,
                           num_positives=self.k, **self.coeffs)
        rng = random.Random(self.seed)
        positives = torch.tensor([rng.sample([j for j in range(self.num_items) if j != i], self.k)
                                  for i in range(self.num_items)])
        cma.set_positives(positives)
        if self.log_z is not None:
            cma.log_partition.fill_(self.log_z)  # as after the AVID stage (CMA starts from its Z)
        return cma, positives

    def inputs(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed(100 + self.seed)
        b = len(self.ids)
        return (torch.randn(b, self.dim, generator=g), torch.randn(b, self.dim, generator=g),
                torch.tensor(self.ids))

    def negatives(self, positives: torch.Tensor) -> torch.Tensor:
        """K ids per row drawn uniformly (with replacement) from everything but i and P(i)."""
        rng = random.Random(1000 + self.seed)
        rows = []
        for i in self.ids:
            allowed = sorted(set(range(self.num_items)) - {i} - set(positives[i].tolist()))
            rows.append([rng.choice(allowed) for _ in range(self.num_negatives)])
        return torch.tensor(rows)


# ------------------------------------------------------------------------------------ the loop
def _unit(x: torch.Tensor) -> torch.Tensor:
    return x / torch.sqrt((x * x).sum())


def _row_loss(pos: list, neg: list, loss: str, log_z: float, num_items: int) -> torch.Tensor:
    if loss == "nce":
        noise = len(neg) * math.exp(log_z) / num_items  # K * Pn * Z, Pn = 1 / N
        out = sum(-torch.log(torch.exp(s) / (torch.exp(s) + noise)) for s in pos) / len(pos)
        return out + sum(-torch.log(noise / (torch.exp(m) + noise)) for m in neg)
    neg_sum = sum(torch.exp(m) for m in neg)
    return sum(-torch.log(torch.exp(s) / (torch.exp(s) + neg_sum)) for s in pos) / len(pos)


def formula(s: Setup, v_raw, a_raw, ids, V, A, positives, negatives):
    """Loop over rows and ids: (total, {group: loss}, estimated-or-given log Z). float64 throughout;
    v_raw / a_raw are leaf tensors so the caller can read the gradients."""
    T, W = s.temperature, s.within
    ids = ids.tolist()
    v = [_unit(v_raw[b]) for b in range(len(ids))]
    a = [_unit(a_raw[b]) for b in range(len(ids))]

    def logit(q, x):
        return torch.dot(q, x) / T

    def bank_term(b, query, bank, pos_ids, neg_ids):
        return [logit(query[b], bank[j]) for j in pos_ids], [logit(query[b], bank[j]) for j in neg_ids]

    rows = {}  # (group, direction) -> per-row (pos logits, neg logits)
    for b, i in enumerate(ids):
        P, N = positives[i].tolist(), negatives[b].tolist()
        assert i not in N and not set(P) & set(N), "negatives must avoid the instance and its positives"
        c = s.coeffs
        if c["xmodal_inst"] > 0 and s.in_batch:
            others = [j for j in range(len(ids)) if ids[j] != i]
            rows.setdefault(("xmodal_inst", "v2a"), []).append(
                ([logit(v[b], a[b])], [logit(v[b], a[j]) for j in others]))
            rows.setdefault(("xmodal_inst", "a2v"), []).append(
                ([logit(a[b], v[b])], [logit(a[b], v[j]) for j in others]))
        elif c["xmodal_inst"] > 0:
            rows.setdefault(("xmodal_inst", "v2a"), []).append(bank_term(b, v, A, [i], N))
            rows.setdefault(("xmodal_inst", "a2v"), []).append(bank_term(b, a, V, [i], N))
        if c["wmodal_pos"] > 0:
            rows.setdefault(("wmodal_pos", "v2v"), []).append(bank_term(b, v, V, P, N[:W]))
            rows.setdefault(("wmodal_pos", "a2a"), []).append(bank_term(b, a, A, P, N[:W]))
        if c["wmodal_inst"] > 0:
            rows.setdefault(("wmodal_inst", "v2v"), []).append(bank_term(b, v, V, [i], N))
            rows.setdefault(("wmodal_inst", "a2a"), []).append(bank_term(b, a, A, [i], N))
        if c["xmodal_pos"] > 0:
            rows.setdefault(("xmodal_pos", "v2a"), []).append(bank_term(b, v, A, P, N))
            rows.setdefault(("xmodal_pos", "a2v"), []).append(bank_term(b, a, V, P, N))

    log_z = s.log_z
    if s.loss == "nce" and log_z is None:
        # first batch: Z = N * mean of e^s over every negative logit of every active term
        negs = [float(m.detach()) for per_row in rows.values() for _, neg in per_row for m in neg]
        log_z = math.log(s.num_items * sum(math.exp(m) for m in negs) / len(negs))
    direction = {key: sum(_row_loss(p, n, s.loss, log_z, s.num_items) for p, n in per_row) / len(per_row)
                 for key, per_row in rows.items()}
    groups = {}
    for (group, _), value in direction.items():
        groups[group] = groups.get(group, 0.0) + value / 2
    total = sum(s.coeffs[g] * groups[g] for g in groups)
    return total, groups, log_z


def expected_banks(s: Setup, v_raw, a_raw, ids, V, A):
    """Slots of the batch after the step: normalize(m * old + (1 - m) * mean of the batch's unit rows)."""
    V, A = V.clone(), A.clone()
    for i in sorted(set(ids.tolist())):
        rows = [b for b, j in enumerate(ids.tolist()) if j == i]
        for bank, raw in ((V, v_raw), (A, a_raw)):
            mean = sum(_unit(raw[b]) for b in rows) / len(rows)
            bank[i] = _unit(s.momentum * bank[i] + (1 - s.momentum) * mean)
    return V, A


# ------------------------------------------------------------------------------------ the check
def check_against_formula(s: Setup, cma: CMACriterion, positives: torch.Tensor,
                          negatives: torch.Tensor | None = None, generator: torch.Generator | None = None,
                          formula_negatives: torch.Tensor | None = None) -> dict:
    """Run ``cma`` on the setup's inputs and the loop on the same inputs; AssertionError on any
    difference (total, per-group stats, gradients of both inputs, updated banks). ``positives`` and
    the setup's numbers are the truth the loop uses, whatever the module holds."""
    v_in, a_in, ids = s.inputs()
    V0 = cma.video_bank.bank.detach().clone().double()
    A0 = cma.audio_bank.bank.detach().clone().double()
    negs = negatives if negatives is not None else formula_negatives
    assert negs is not None

    v_mod, a_mod = v_in.clone().requires_grad_(), a_in.clone().requires_grad_()
    total, stats = cma(v_mod, a_mod, ids, negatives=negatives, generator=generator)
    total.backward()

    v_ref, a_ref = v_in.double().requires_grad_(), a_in.double().requires_grad_()
    ref_total, ref_groups, ref_log_z = formula(s, v_ref, a_ref, ids, V0, A0, positives, negs)
    ref_total.backward()

    tol = dict(rtol=2e-5, atol=2e-5)
    torch.testing.assert_close(total.detach().double(), ref_total.detach(), **tol, msg="total loss")
    active = {g for g in GROUPS if s.coeffs[g] > 0}
    assert {k for k in stats if k.split("/")[-1] in GROUPS and k.count("/") == 1} == {f"loss/{g}" for g in active}
    for g in active:
        torch.testing.assert_close(stats[f"loss/{g}"].double(), ref_groups[g].detach(), **tol, msg=f"loss/{g}")
    if s.loss == "nce":
        assert math.isclose(float(cma.log_partition), ref_log_z, rel_tol=1e-5), "partition constant"
    torch.testing.assert_close(v_mod.grad.double(), v_ref.grad, rtol=1e-4, atol=1e-5, msg="video gradient")
    torch.testing.assert_close(a_mod.grad.double(), a_ref.grad, rtol=1e-4, atol=1e-5, msg="audio gradient")
    V1, A1 = expected_banks(s, v_ref.detach(), a_ref.detach(), ids, V0, A0)
    torch.testing.assert_close(cma.video_bank.bank.double(), V1, rtol=1e-5, atol=1e-6, msg="video bank update")
    torch.testing.assert_close(cma.audio_bank.bank.double(), A1, rtol=1e-5, atol=1e-6, msg="audio bank update")
    return {"total": float(ref_total.detach()), **{g: float(x.detach()) for g, x in ref_groups.items()}}


def _coeffs(xi, wp, wi, xp):
    return {"xmodal_inst": xi, "wmodal_pos": wp, "wmodal_inst": wi, "xmodal_pos": xp}


COEFFS = {
    "reference": _coeffs(0.5, 0.5, 0.0, 0.0),
    "xmodal_inst": _coeffs(1.0, 0.0, 0.0, 0.0),
    "wmodal_pos": _coeffs(0.0, 1.0, 0.0, 0.0),
    "wmodal_inst": _coeffs(0.0, 0.0, 1.0, 0.0),
    "xmodal_pos": _coeffs(0.0, 0.0, 0.0, 1.0),
    "all_four": _coeffs(0.3, 0.7, 0.2, 0.4),
}
VARIANTS = {"nce": dict(loss="nce"), "infonce": dict(loss="infonce", temperature=0.1),
            "infonce_in_batch": dict(loss="infonce", temperature=0.1, in_batch=True, momentum=0.0)}


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("weights", list(COEFFS))
def test_criterion_equals_the_formula(variant, weights):
    s = Setup(coeffs=COEFFS[weights], **VARIANTS[variant])
    cma, positives = s.build()
    out = check_against_formula(s, cma, positives, negatives=s.negatives(positives))
    assert all(math.isfinite(x) for x in out.values())


@pytest.mark.parametrize("weights", ["reference", "all_four"])
def test_first_batch_partition_estimate_equals_the_formula(weights):
    """log Z unset (a CMA criterion not started from AVID): estimated on this batch, then used."""
    s = Setup(coeffs=COEFFS[weights], log_z=None)
    cma, positives = s.build()
    check_against_formula(s, cma, positives, negatives=s.negatives(positives))
    assert cma.partition is not None


def test_negatives_drawn_by_the_criterion_avoid_the_positive_set_and_equal_the_formula():
    """No negatives given: the criterion draws them from the generator over every slot but i and
    P(i) (MemoryBank.sample_negatives); a clone of the generator reproduces the draw for the loop."""
    s = Setup(coeffs=COEFFS["all_four"], num_items=45, num_negatives=30, within=9, k=6)
    cma, positives = s.build()
    g = torch.Generator().manual_seed(7)
    twin = torch.Generator().manual_seed(7)
    ids = torch.tensor(s.ids)
    drawn = cma.video_bank.sample_negatives(ids, s.num_negatives, generator=twin, exclude=positives[ids])
    for row, i in zip(drawn.tolist(), s.ids):
        assert i not in row and not set(row) & set(positives[i].tolist())
    check_against_formula(s, cma, positives, generator=g, formula_negatives=drawn)


# ------------------------------------------------------------------------------------ the guard bites
def _first_positive_only(cma):
    cma.positives = cma.positives[:, :1].contiguous()  # the module keeps only P(i)[0]


def _all_negatives_within(cma):
    cma.num_negatives_within = cma.num_negatives  # within-modal term scored against all K negatives


def _video_bank_for_a2a(cma):
    # every audio-bank read returns video rows; in these setups a2a is the only reader of the audio
    # bank (the cross-modal term is in-batch or switched off), so exactly a2a is scored against V
    cma.audio_bank.forward = cma.video_bank.forward


BREAKAGES = {
    "first_positive_only": (_first_positive_only, Setup()),
    "all_negatives_within": (_all_negatives_within, Setup()),
    "video_bank_for_a2a_in_batch": (_video_bank_for_a2a, Setup(**VARIANTS["infonce_in_batch"])),
    "video_bank_for_a2a_nce": (_video_bank_for_a2a, Setup(coeffs=COEFFS["wmodal_pos"])),
}


@pytest.mark.parametrize("name", list(BREAKAGES))
def test_the_formula_check_fails_on_a_broken_within_modal_term(name):
    """Each breakage of the within-modal positive-set term (which tests/test_cma.py let through) makes
    check_against_formula raise; the same setup unbroken passes."""
    breakage, s = BREAKAGES[name]
    cma, positives = s.build()
    check_against_formula(s, cma, positives, negatives=s.negatives(positives))  # control: intact module
    cma, positives = s.build()
    breakage(cma)
    with pytest.raises(AssertionError, match="total loss"):
        check_against_formula(s, cma, positives, negatives=s.negatives(positives))
