"""DSPS+'s cheap predictor of a candidate's accuracy and energy, fitted on a study's trials.

Two ridge regressions on feature rows of the architecture (:class:`ArchitectureEncoder`): for
accuracy, one-hot genes per block position, shared (threshold, tau) pairs, time steps, width,
depth and the log of the dense parameter count, optionally crossed with the time steps (the pairs
and the width) and, with a ``rich`` encoder, every block gene's value crossed with the depth, the
width and T (a neuron setting that serves a one-block model need not serve a two-block one); of
these nested sets the one with the least closed-form leave-one-out error is kept at each refit.
For energy, each block's dense MACs times T split by its (threshold, tau) pair, since a block's
synaptic operations are its firing rate times T times its MACs and the rate follows the neuron
settings.
With ``accuracy_model = "gp"``, accuracy is instead a Gaussian process on the architecture's
genes as numbers (:class:`GaussianProcessAccuracy`): closer to what a candidate measures, at a
higher cost per refit.
Refits follow :func:`refit_point`, a function of the draw index, so resumed runs fit the same.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from autospikformer.checks import check_choice
from autospikformer.search.architecture import PER_BLOCK_FIELDS, Architecture
from autospikformer.search.mirror import TrialSummary
from autospikformer.search.space import SearchSpace

#: Ridge penalty of both predictors (features are one-hot or of order one).
RIDGE_ALPHA = 1.0
#: The accuracy models a predictor can fit: ridge regressions on one-hot features, or a
#: Gaussian process on the genes as numbers.
ACCURACY_MODELS = ("ridge", "gp")
#: The Gaussian process is fitted on at most this many trials, the last drawn (its fit grows
#: with the cube of the trials; the search evaluates near the recent ones).
GP_MAX_TRIALS = 400


class ArchitectureEncoder:
    """Feature rows of architectures of one space, for the accuracy and the energy model;
    ``rich``: the accuracy rows also cross each block gene with the global genes (columns from
    ``acc_width`` to ``rich_width``; without it the two are equal and nothing is computed)."""

    def __init__(self, space: SearchSpace, *, rich: bool = False) -> None:
        self.rich = rich
        c = space.choices
        self.depth = max(c["depth"])
        self.index: dict[str, dict[Any, int]] = {f: {v: i for i, v in enumerate(c[f])} for f in c}
        self.pairs = {
            (th, tau): i
            for i, (th, tau) in enumerate((a, b) for a in c["threshold"] for b in c["tau"])
        }
        n = {f: len(c[f]) for f in c}
        self.globals = ["depth", "embed_dim", "time_steps"]
        offset = 0
        self.global_at: dict[str, int] = {}
        for field in self.globals:
            self.global_at[field] = offset
            offset += n[field]
        self.block_at: dict[str, int] = {}
        for field in PER_BLOCK_FIELDS:
            self.block_at[field] = offset
            offset += n[field] * self.depth
        self.pair_at = offset
        offset += len(self.pairs)
        self.size_at = offset
        offset += 2
        self.plain_width = offset
        # interactions with the time steps: a neuron setting, and a width, serve T differently
        self.steps = {t: i for i, t in enumerate(c["time_steps"])}
        self.pair_steps_at = offset
        offset += len(self.pairs) * len(self.steps)
        self.embed_steps_at = offset
        offset += n["embed_dim"] * len(self.steps)
        self.acc_width = offset
        # interactions of each block gene's value with each global gene (depth, width, T): a
        # neuron setting or MLP ratio that serves one depth or width need not serve another
        self.gene_globals_at: dict[tuple[str, str], int] = {}
        for field in PER_BLOCK_FIELDS if rich else ():
            for name in self.globals:
                self.gene_globals_at[(field, name)] = offset
                offset += n[field] * n[name]
        self.rich_width = offset
        self.max_embed = float(max(c["embed_dim"]))
        self.max_heads = float(max(c["num_heads"]))
        self.energy_width = 2 * len(self.pairs) + 2
        self.gene_width = 3 + 5 * self.depth

    def accuracy_row(self, arch: Architecture) -> np.ndarray:
        row = np.zeros(self.rich_width)
        for field in self.globals:
            row[self.global_at[field] + self.index[field][getattr(arch, field)]] = 1.0
        share = 1.0 / arch.depth
        for field in PER_BLOCK_FIELDS:
            at, width = self.block_at[field], len(self.index[field])
            for i, value in enumerate(getattr(arch, field)):
                row[at + i * width + self.index[field][value]] = share
        for th, tau in zip(arch.threshold, arch.tau, strict=True):
            row[self.pair_at + self.pairs[(th, tau)]] += share
        e = arch.embed_dim / self.max_embed
        params = sum((4 + 2 * r) * e * e for r in arch.mlp_ratio)
        row[self.size_at] = math.log(params)
        row[self.size_at + 1] = math.log(params) ** 2
        t, steps = self.steps[arch.time_steps], len(self.steps)
        for th, tau in zip(arch.threshold, arch.tau, strict=True):
            row[self.pair_steps_at + self.pairs[(th, tau)] * steps + t] += share
        embed = self.index["embed_dim"][arch.embed_dim]
        row[self.embed_steps_at + embed * steps + t] = 1.0
        for (field, name), at in self.gene_globals_at.items():
            width = len(self.index[field])
            g = self.index[name][getattr(arch, name)]
            for value in getattr(arch, field):
                row[at + g * width + self.index[field][value]] += share
        return row

    def gene_row(self, arch: Architecture) -> np.ndarray:
        """The genes as numbers, for the Gaussian process: depth, log2 width and T, then per
        block position the log threshold, log tau, MLP ratio, heads over the most heads, and 1
        (all 0 where the architecture has no such block)."""
        row = np.zeros(self.gene_width)
        row[:3] = (arch.depth, math.log2(arch.embed_dim), arch.time_steps)
        for i in range(arch.depth):
            row[3 + 5 * i : 8 + 5 * i] = (
                math.log(arch.threshold[i]),
                math.log(arch.tau[i]),
                arch.mlp_ratio[i],
                arch.num_heads[i] / self.max_heads,
                1.0,
            )
        return row

    def energy_row(self, arch: Architecture) -> np.ndarray:
        row = np.zeros(self.energy_width)
        e = arch.embed_dim / self.max_embed
        t = float(arch.time_steps)
        width = len(self.pairs)
        for i in range(arch.depth):
            k = self.pairs[(arch.threshold[i], arch.tau[i])]
            row[k] += t * (4 + 2 * arch.mlp_ratio[i]) * e * e
            row[width + k] += t * e
        row[2 * width] = t * e * e  # spike-driven patch-splitting convolutions
        row[2 * width + 1] = e  # the first convolution, on real-valued input
        return row


class RidgeRegression:
    """Least squares with an L2 penalty and an unpenalised intercept (a closed form: fast)."""

    def __init__(self, alpha: float = RIDGE_ALPHA) -> None:
        self.alpha = alpha
        self.coef = np.zeros(0)
        self.intercept = 0.0

    def fit(
        self,
        x: np.ndarray,
        y: np.ndarray,
        *,
        loo: bool = False,
        variance: bool = False,
        recent: int | None = None,
    ) -> RidgeRegression:
        """Fit; ``loo``: also set ``loo_mse``, the leave-one-out mean squared error, in closed
        form (residual / (1 - h_ii), h the hat matrix's diagonal, to which centring adds 1/n),
        which model selection compares. ``variance``: also keep what :meth:`predict_std` needs
        (the inverse of the penalised Gram matrix and the noise variance)."""
        n = len(y)
        mean_x, mean_y = x.mean(axis=0), float(y.mean())
        xc = x - mean_x
        gram = xc.T @ xc + self.alpha * np.eye(x.shape[1])
        inverse = np.linalg.inv(gram) if variance else None
        solved = None
        if inverse is not None:
            solved = inverse @ xc.T
            self.coef = solved @ (y - mean_y)
        elif loo:
            solved = np.linalg.solve(gram, xc.T)  # one solve gives the weights and the hat
            self.coef = solved @ (y - mean_y)
        else:
            self.coef = np.linalg.solve(gram, xc.T @ (y - mean_y))
        self.intercept = mean_y - float(mean_x @ self.coef)
        if solved is not None:
            hat = np.einsum("ij,ji->i", xc, solved) + 1.0 / n
            residual = y - self.predict(x)
            left_out = residual / np.maximum(1.0 - hat, 1e-9)
            self.loo_mse = float(np.mean(left_out**2))
            if inverse is not None:
                self.mean_x, self.inverse, self.n = mean_x, inverse, n
                # E[r_i^2] = s^2 (1 - h_ii) for least squares: r_i^2 / (1 - h_ii) estimates s^2;
                # ``recent``: from the last rows only (where the search evaluates now)
                tail = slice(-recent, None) if recent else slice(None)
                self.noise = float(np.mean((residual * left_out)[tail]))
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        return x @ self.coef + self.intercept

    def predict_std(self, x: np.ndarray) -> np.ndarray:
        """Standard deviation of the value a new row would be measured at: the Bayesian reading
        of ridge regression (weights a posteriori ``N(coef, s^2 A^-1)``, A the penalised Gram
        matrix of the centred rows, plus ``s^2 / n`` for the intercept) plus the noise ``s^2``:
        ``s * sqrt(1 + 1/n + x_c A^-1 x_c)``. Rows unlike the fitted ones (rare genes, unseen
        combinations) get a larger spread. Needs ``fit(..., variance=True)``."""
        xc = x - self.mean_x
        leverage = ((xc @ self.inverse) * xc).sum(axis=1) + 1.0 / self.n
        return np.sqrt(max(self.noise, 0.0) * (1.0 + leverage))


class GaussianProcessAccuracy:
    """A Gaussian process regression of accuracy on :meth:`ArchitectureEncoder.gene_row`:
    scikit-learn's, with a squared-exponential kernel of one length scale per gene column
    (columns standardised on the fitted rows), a constant scale and white noise, all by maximum
    marginal likelihood from one deterministic start, so a refit on the same trials repeats.
    Fit and prediction run on one BLAS thread: a multi-threaded BLAS sums in another order, and
    the optimiser would carry the difference into another pick, so a seeded run would not repeat
    on another thread count. Unlike the additive ridge it lets any genes interact, as near as
    the data say."""

    def __init__(self, rows: np.ndarray, values: np.ndarray) -> None:
        import warnings

        from sklearn.exceptions import ConvergenceWarning
        from sklearn.gaussian_process import GaussianProcessRegressor
        from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel
        from threadpoolctl import threadpool_limits

        self.mean = rows.mean(axis=0)
        spread = rows.std(axis=0)
        self.scale = np.where(spread > 0, spread, 1.0)
        kernel = ConstantKernel(1.0, (1e-3, 1e3)) * RBF(
            np.ones(rows.shape[1]), (1e-2, 1e3)
        ) + WhiteKernel(1e-2, (1e-6, 1e1))
        self.model = GaussianProcessRegressor(kernel, normalize_y=True, random_state=0)
        # a length scale at its bound is a gene that does not matter: no warning
        with warnings.catch_warnings(), threadpool_limits(limits=1, user_api="blas"):
            warnings.simplefilter("ignore", ConvergenceWarning)
            self.model.fit((rows - self.mean) / self.scale, values)

    def predict(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean and standard deviation of what each row would measure (the noise included)."""
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=1, user_api="blas"):
            mean, std = self.model.predict((rows - self.mean) / self.scale, return_std=True)
        return mean, std


class ObjectivePredictor:
    """Predicted (accuracy, energy) of architectures, fitted on complete trials.

    ``rows`` caches each architecture's feature rows across refits (one sampler's cache); a
    ``rich`` encoder lets the accuracy model add the block genes crossed with the global genes.
    ``accuracy_model`` ``"gp"`` fits accuracy with :class:`GaussianProcessAccuracy` on the last
    :data:`GP_MAX_TRIALS` records instead (energy stays the ridge: it is linear in its features);
    its accuracy rows, cached as the ridge's are, are then the gene rows.
    """

    def __init__(
        self,
        encoder: ArchitectureEncoder,
        records: Sequence[TrialSummary],
        rows: dict[Architecture, tuple[np.ndarray, np.ndarray]] | None = None,
        *,
        variance: bool = False,
        recent: int | None = None,
        accuracy_model: str = "ridge",
    ) -> None:
        check_choice("accuracy_model", accuracy_model, ACCURACY_MODELS)
        self.encoder = encoder
        self.variance = variance
        self.gp: GaussianProcessAccuracy | None = None
        self.accuracy_row = encoder.gene_row if accuracy_model == "gp" else encoder.accuracy_row
        self.rows = {} if rows is None else rows
        acc_x, energy_x = self._features([r.arch for r in records], keep=True)  # type: ignore[misc]
        acc = np.array([r.values[0] for r in records])  # type: ignore[index]
        energy = np.array([r.values[1] for r in records])  # type: ignore[index]
        self.energy_scale = float(np.abs(energy).mean()) or 1.0
        if accuracy_model == "gp":
            self.gp = GaussianProcessAccuracy(acc_x[-GP_MAX_TRIALS:], acc[-GP_MAX_TRIALS:])
        else:
            self.acc_scale = float(acc.std()) or 1.0
            # the nested feature sets (no interactions, the time steps', every global gene's), the
            # one that predicts left-out trials best: interactions help on real supernets and only
            # add variance where accuracy is additive
            widths = [encoder.plain_width, encoder.acc_width]
            widths += [encoder.rich_width] if encoder.rich else []
            fits = [
                RidgeRegression().fit(
                    acc_x[:, :w], acc / self.acc_scale, loo=True, variance=variance, recent=recent
                )
                for w in widths
            ]
            best = min(range(len(fits)), key=lambda i: fits[i].loo_mse)
            self.width, self.accuracy = widths[best], fits[best]
        self.energy = RidgeRegression(alpha=1e-3).fit(
            energy_x, energy / self.energy_scale, variance=variance, recent=recent
        )

    @property
    def interactions(self) -> str:
        """The accuracy model's interactions, as leave-one-out chose them: ``"none"``,
        ``"time_steps"`` or ``"globals"``; ``"all"`` for the Gaussian process."""
        if self.gp is not None:
            return "all"
        widths = (self.encoder.plain_width, self.encoder.acc_width, self.encoder.rich_width)
        return ("none", "time_steps", "globals")[widths.index(self.width)]

    def _features(
        self, archs: Sequence[Architecture], *, keep: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        """Feature matrices of ``archs``; ``keep``: cache the rows (evaluated architectures
        only: proposals that are never evaluated would grow the cache without bound)."""
        rows = []
        for arch in archs:
            row = self.rows.get(arch)
            if row is None:
                row = (self.accuracy_row(arch), self.encoder.energy_row(arch))
                if keep:
                    self.rows[arch] = row
            rows.append(row)
        return np.array([r[0] for r in rows]), np.array([r[1] for r in rows])

    def predict(self, archs: Sequence[Architecture]) -> np.ndarray:
        """n x 2 array of (accuracy, energy)."""
        return self.predict_distribution(archs, std=False)[0]

    def predict_distribution(
        self, archs: Sequence[Architecture], *, std: bool = True
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """(n x 2 predicted (accuracy, energy), n x 2 standard deviations of what they would
        measure, :meth:`RidgeRegression.predict_std`; None unless ``std`` and fitted with
        ``variance``)."""
        acc_x, energy_x = self._features(archs, keep=False)
        energy = self.energy.predict(energy_x) * self.energy_scale
        if self.gp is not None:
            acc, acc_std = self.gp.predict(acc_x)
        else:
            acc_x = acc_x[:, : self.width]
            acc = self.accuracy.predict(acc_x) * self.acc_scale
        mean = np.column_stack((acc, energy))
        if not (std and self.variance):
            return mean, None
        if self.gp is None:
            acc_std = self.accuracy.predict_std(acc_x) * self.acc_scale
        spread = np.column_stack((acc_std, self.energy.predict_std(energy_x) * self.energy_scale))
        return mean, spread


def refit_point(number: int, every: int) -> int:
    """The last refit point at or below draw index ``number``: points are ``every`` draws
    apart, or 5 % of the draws so far when that is more, so a refit costs O(1) per trial
    amortised however long the study runs (a function of the index alone: resumed runs agree)."""
    point = 0
    while True:
        step = max(every, point // 20)
        if point + step > number:
            return point
        point += step
