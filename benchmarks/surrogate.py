"""A fast, deterministic surrogate of (accuracy, energy) over a real search space (S_T2+S_S).

It stands in for "train the supernet, evaluate each subnet" so that samplers can be compared at
1000 trials in seconds. Both functions are smooth, deterministic functions of the architecture:

* **Energy** (mJ/image) follows SPEC section 4 with modelled firing rates: per block the dense
  MACs for N = 64 tokens are ``4*N*E^2`` (q, k, v, projection) ``+ 2*N*r*E^2`` (MLP)
  ``+ 2*N^2*E`` (the two SSA products); the block's rate is
  ``clip(0.35 * (1/threshold)^1.2 * (2/tau)^0.35, 0.02, 0.95)`` (a higher threshold or a
  slower leak fires less, as the paper's Table 2 shows); SOPs = rate * T * MACs at E_AC = 0.9 pJ,
  plus the SPS convolutions (first conv at E_MAC = 4.6 pJ once, the rest at rate 0.2).
  Spikformer-4-384 (rate 0.35, T=4) gets 0.93 mJ, the scale the paper reports.
* **Accuracy** (%, CIFAR-10-like) rises with capacity (parameters, saturating), with time steps,
  and with the information the spikes carry: blocks that fire too little (rate < 0.25) lose
  accuracy fast, too much (rate > 0.5) slowly; 12 heads are slightly better than 6; a small
  deterministic "evaluation noise" of +-0.15 points comes from a hash of the architecture.
  One more term models what weight sharing does to the SNN part: the shared weights of block i
  serve one neuron setting best (``PREFERRED_NEURONS[i]``), and accuracy falls with the
  log-distance of the block's threshold and tau from it (``MISMATCH_WEIGHT`` points per squared
  octave of threshold / quarter-decade of tau, averaged over blocks). This term is what makes
  random candidates' accuracy barely follow their energy, as the paper observes (Kendall tau
  0.08 for random candidates). Without it (``--mismatch-weight 0``) every sampler's front is
  within 1 % hypervolume of random search's: the problem is then too easy to rank samplers.

So energy and accuracy conflict through size, time steps and firing rate, as in the paper.
"""

from __future__ import annotations

import hashlib
import math

from autospikformer.search.architecture import Architecture
from autospikformer.search.space import SearchSpace

TOKENS = 64
E_MAC_PJ = 4.6
E_AC_PJ = 0.9


# Neuron setting (threshold, tau) that the shared weights of block i serve best.
PREFERRED_NEURONS = ((1.0, 2.0), (1.2, 3.0), (0.8, 1.5), (1.4, 2.0), (1.0, 5.0), (1.6, 3.0))
MISMATCH_WEIGHT = 10.0


def firing_rate(threshold: float, tau: float) -> float:
    """Modelled mean firing rate of a block's neurons."""
    return min(0.95, max(0.02, 0.35 * (1.0 / threshold) ** 1.2 * (2.0 / tau) ** 0.35))


def _block_macs(arch: Architecture, i: int) -> float:
    e, n = arch.embed_dim, TOKENS
    return 4 * n * e * e + 2 * n * arch.mlp_ratio[i] * e * e + 2 * n * n * e


def _sps_macs(e: int) -> tuple[float, float]:
    """(first conv MACs, MACs of the other SPS convs) for a 32x32 RGB input."""
    first = 32 * 32 * 3 * 9 * (e // 8)
    rest = (
        32 * 32 * (e // 8) * 9 * (e // 4)
        + 32 * 32 * (e // 4) * 9 * (e // 2)
        + 16 * 16 * (e // 2) * 9 * e
        + 8 * 8 * e * 9 * e
    )
    return float(first), float(rest)


def energy_mj(arch: Architecture) -> float:
    """Energy per image in mJ (SPEC section 4 with modelled rates)."""
    first, rest = _sps_macs(arch.embed_dim)
    sops = sum(
        firing_rate(arch.threshold[i], arch.tau[i]) * _block_macs(arch, i)
        for i in range(arch.depth)
    )
    sops += 0.2 * rest
    return (E_MAC_PJ * first + E_AC_PJ * arch.time_steps * sops) * 1e-9


def neuron_mismatch(arch: Architecture) -> float:
    """Mean squared log-distance of each block's (threshold, tau) from its preferred setting."""
    total = 0.0
    for i in range(arch.depth):
        best_threshold, best_tau = PREFERRED_NEURONS[i % len(PREFERRED_NEURONS)]
        d_threshold = math.log(arch.threshold[i] / best_threshold) / math.log(2.0)
        d_tau = math.log(arch.tau[i] / best_tau) / math.log(4.0)
        total += d_threshold**2 + d_tau**2
    return total / arch.depth


def accuracy(arch: Architecture, mismatch_weight: float = MISMATCH_WEIGHT) -> float:
    """Accuracy-like score in percent."""
    params = sum((4 + 2 * arch.mlp_ratio[i]) * arch.embed_dim**2 for i in range(arch.depth))
    acc = 96.0 - 7.0 * math.exp(-params / 4.0e6)
    acc -= {2: 1.6, 3: 0.6}.get(arch.time_steps, 0.0)
    spikes = 0.0
    for i in range(arch.depth):
        rate = firing_rate(arch.threshold[i], arch.tau[i])
        spikes += 6.0 * max(0.0, math.log(0.25 / rate)) ** 2
        spikes += 0.8 * max(0.0, math.log(rate / 0.5)) ** 2
        spikes += 0.15 if arch.num_heads[i] == 6 else 0.0
    acc -= spikes / arch.depth
    acc -= mismatch_weight * neuron_mismatch(arch)
    digest = hashlib.sha256(str(arch).encode()).digest()
    acc += 0.3 * (int.from_bytes(digest[:4], "big") / 2**32 - 0.5)
    return acc


def evaluate(arch: Architecture, mismatch_weight: float = MISMATCH_WEIGHT) -> tuple[float, float]:
    """``(accuracy %, energy mJ)``: the two study objectives."""
    return accuracy(arch, mismatch_weight), energy_mj(arch)


def reference_point(space: SearchSpace) -> tuple[float, float]:
    """A hypervolume reference (accuracy floor, energy ceiling) that every candidate beats.

    Energy is monotone in every field, so its maximum is the largest shape with the lowest
    threshold and tau; the accuracy floor is 80 %.
    """
    big = space.largest()
    c = space.choices
    worst = Architecture(
        depth=big.depth,
        embed_dim=big.embed_dim,
        mlp_ratio=big.mlp_ratio,
        num_heads=big.num_heads,
        threshold=(min(c["threshold"]),) * big.depth,
        tau=(min(c["tau"]),) * big.depth,
        time_steps=big.time_steps,
    )
    return 80.0, energy_mj(worst) * 1.01
