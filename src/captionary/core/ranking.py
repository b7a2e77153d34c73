"""Pairwise ranking: a Bradley-Terry fit with uncertainty, active pair choice, and a learned ranker.

Scores are on the logit scale: P(i beats j) = sigmoid(s_i - s_j). The fit is the MAP estimate under
a Gaussian prior N(prior_mean, prior_sigma^2) per item (Newton's method), and each score's
uncertainty is the Laplace approximation (the diagonal of the inverse Hessian; its diagonal alone
beyond `DENSE_LIMIT` items). A "can't tell" answer counts as half a win for each side.

`choose_pairs` asks for the pairs whose answer is most informative: outcome uncertain (p(1-p)) times
how unsure the two scores are (var_i + var_j), with an `explore` share of random unanswered pairs.
`expected_tau` estimates the Kendall tau of the fitted order against the person's own judgement
from the scores and their uncertainty; it is what a ranking's `target` is compared with.

`fit_linear` is the learned ranker: a linear Bradley-Terry model on embeddings (a ridge logistic
regression on embedding differences), whose predictions and their variance serve as the prior of
every item, so items never shown get a score, and pairs the model is unsure about are asked first.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

DENSE_LIMIT = 800
"""Up to this many items the Hessian is solved and inverted exactly; beyond, conjugate gradients and
the diagonal approximation of the variance (TrueSkill-like)."""
TIE = 0.5


@dataclass
class Ranking:
    """A fit: `scores` (logit scale), their standard deviations `sigmas`, comparisons per item."""

    scores: np.ndarray
    sigmas: np.ndarray
    counts: np.ndarray

    def order(self) -> np.ndarray:
        """Item indices from best to worst."""
        import numpy as np

        return np.argsort(-self.scores, kind="stable")


def _sigmoid(x: np.ndarray) -> np.ndarray:
    import numpy as np

    return 0.5 * (1.0 + np.tanh(0.5 * x))


def as_arrays(n: int, answers: Iterable[tuple[int, int, float]]) -> tuple[np.ndarray, np.ndarray]:
    """(pairs (m, 2) int, outcomes (m,) float: 1 = the first won, 0 = the second, 0.5 = can't tell)."""
    import numpy as np

    rows = list(answers)
    pairs = np.array([(a, b) for a, b, _ in rows], dtype=np.int64).reshape(-1, 2)
    outcomes = np.array([o for _, _, o in rows], dtype=np.float64)
    if pairs.size and (pairs.min() < 0 or pairs.max() >= n or np.any(pairs[:, 0] == pairs[:, 1])):
        raise ValueError("a comparison names an item outside the ranking, or an item against itself")
    return pairs, outcomes


def fit(
    n: int,
    pairs: np.ndarray,
    outcomes: np.ndarray,
    prior_mean: np.ndarray | None = None,
    prior_sigma: float | np.ndarray = 1.5,
    start: np.ndarray | None = None,
    iterations: int = 30,
) -> Ranking:
    """The MAP Bradley-Terry scores of `n` items from answered `pairs` and their `outcomes`."""
    import numpy as np

    mean = np.zeros(n) if prior_mean is None else np.asarray(prior_mean, dtype=np.float64)
    precision = np.broadcast_to(1.0 / np.square(np.asarray(prior_sigma, dtype=np.float64)), (n,)).copy()
    s = mean.copy() if start is None or len(start) != n else np.asarray(start, dtype=np.float64).copy()
    a, b = (pairs[:, 0], pairs[:, 1]) if len(pairs) else (np.zeros(0, int), np.zeros(0, int))
    counts = np.bincount(a, minlength=n) + np.bincount(b, minlength=n)
    for _ in range(iterations):
        p = _sigmoid(s[a] - s[b])
        residual = p - outcomes
        grad = precision * (s - mean) + np.bincount(a, residual, n) - np.bincount(b, residual, n)
        weight = p * (1 - p)
        step = _solve(n, a, b, weight, precision, grad)
        s -= step
        if np.max(np.abs(step), initial=0.0) < 1e-6:
            break
    p = _sigmoid(s[a] - s[b])
    variance = _variance(n, a, b, p * (1 - p), precision)
    return Ranking(scores=s, sigmas=np.sqrt(variance), counts=counts)


def _hessian(n: int, a: np.ndarray, b: np.ndarray, weight: np.ndarray, precision: np.ndarray) -> np.ndarray:
    import numpy as np

    h = np.diag(precision + np.bincount(a, weight, n) + np.bincount(b, weight, n))
    np.add.at(h, (a, b), -weight)
    np.add.at(h, (b, a), -weight)
    return h


def _solve(
    n: int, a: np.ndarray, b: np.ndarray, weight: np.ndarray, precision: np.ndarray, grad: np.ndarray
) -> np.ndarray:
    """H^-1 grad: dense for small n, conjugate gradients on the sparse Laplacian otherwise."""
    import numpy as np

    if n <= DENSE_LIMIT:
        return np.linalg.solve(_hessian(n, a, b, weight, precision), grad)
    diagonal = precision + np.bincount(a, weight, n) + np.bincount(b, weight, n)

    def times(v: np.ndarray) -> np.ndarray:
        d = weight * (v[a] - v[b])
        return precision * v + np.bincount(a, d, n) - np.bincount(b, d, n)

    x = grad / diagonal  # Jacobi-preconditioned CG
    r = grad - times(x)
    z = r / diagonal
    direction = z.copy()
    rz = r @ z
    for _ in range(200):
        hd = times(direction)
        alpha = rz / (direction @ hd)
        x += alpha * direction
        r -= alpha * hd
        if np.linalg.norm(r) < 1e-8 * (1 + np.linalg.norm(grad)):
            break
        z = r / diagonal
        rz, previous = r @ z, rz
        direction = z + (rz / previous) * direction
    return x


def _variance(n: int, a: np.ndarray, b: np.ndarray, weight: np.ndarray, precision: np.ndarray) -> np.ndarray:
    import numpy as np

    if n <= DENSE_LIMIT:
        return np.clip(np.diag(np.linalg.inv(_hessian(n, a, b, weight, precision))), 1e-12, None)
    return 1.0 / (precision + np.bincount(a, weight, n) + np.bincount(b, weight, n))


def expected_tau(ranking: Ranking, samples: int = 20000, seed: int = 0) -> float:
    """The Kendall tau the fitted order is expected to have against the truth, under the fit's own
    uncertainty: the mean over item pairs of P(ordered right) - P(ordered wrong)."""
    import numpy as np

    n = len(ranking.scores)
    if n < 2:
        return 1.0
    if n * (n - 1) // 2 <= samples:
        i, j = np.triu_indices(n, 1)
    else:
        rng = np.random.default_rng(seed)
        i, j = rng.integers(0, n, samples), rng.integers(0, n, samples)
        keep = i != j
        i, j = i[keep], j[keep]
    gap = np.abs(ranking.scores[i] - ranking.scores[j])
    spread = np.sqrt(ranking.sigmas[i] ** 2 + ranking.sigmas[j] ** 2)
    right = _sigmoid(1.702 * gap / spread)  # the normal CDF, in its logistic approximation
    return float(np.mean(2 * right - 1))


def pair_key(i: int, j: int) -> tuple[int, int]:
    return (i, j) if i < j else (j, i)


def choose_pairs(
    ranking: Ranking,
    answered: set[tuple[int, int]],
    count: int = 1,
    explore: float = 0.1,
    seed: int | np.random.Generator | None = None,
    candidates: int = 96,
    avoid: Sequence[int] = (),
) -> list[tuple[int, int]]:
    """Up to `count` unanswered pairs (i < j not in `answered`), no item twice, the most informative
    first; each is instead a random unanswered pair with probability `explore`. Items in `avoid` (on
    screen already) are not used."""
    import numpy as np

    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    n = len(ranking.scores)
    used = set(avoid)
    chosen: list[tuple[int, int]] = []
    variance = ranking.sigmas**2
    for _ in range(count):
        free = np.array([k for k in range(n) if k not in used], dtype=np.int64)
        if len(free) < 2:
            break
        pair = _random_pair(free, answered, rng) if rng.random() < explore else None
        if pair is None:
            pair = _best_pair(ranking, variance, free, answered, rng, candidates)
        if pair is None:
            break
        chosen.append(pair)
        used.update(pair)
    return chosen


def _best_pair(
    ranking: Ranking,
    variance: np.ndarray,
    free: np.ndarray,
    answered: set[tuple[int, int]],
    rng: np.random.Generator,
    candidates: int,
) -> tuple[int, int] | None:
    """The free pair maximising p(1-p) (var_i + var_j): rows are the most uncertain items and a
    random few, columns every free item."""
    import numpy as np

    if len(free) > candidates:
        top = free[np.argsort(-variance[free], kind="stable")[: candidates // 2]]
        rows = np.unique(np.concatenate([top, rng.choice(free, candidates // 2, replace=False)]))
    else:
        rows = free
    p = _sigmoid(ranking.scores[rows, None] - ranking.scores[None, free])
    gain = p * (1 - p) * (variance[rows, None] + variance[None, free])
    gain += rng.random(gain.shape) * 1e-9  # ties broken at random, reproducibly
    gain[rows[:, None] == free[None, :]] = -1
    for flat in np.argsort(-gain, axis=None, kind="stable"):
        r, c = divmod(int(flat), len(free))
        if gain[r, c] < 0:
            return None
        key = pair_key(int(rows[r]), int(free[c]))
        if key not in answered:
            return key
    return None


def _random_pair(
    free: np.ndarray, answered: set[tuple[int, int]], rng: np.random.Generator
) -> tuple[int, int] | None:
    for _ in range(50):
        i, j = rng.choice(free, 2, replace=False)
        key = pair_key(int(i), int(j))
        if key not in answered:
            return key
    return None


@dataclass
class LinearRanker:
    """A linear Bradley-Terry model on embeddings: score = x . weights; `covariance` of the weights."""

    weights: np.ndarray
    covariance: np.ndarray

    def predict(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Scores and their standard deviations for the rows of `x`."""
        import numpy as np

        x = np.asarray(x, dtype=np.float64)
        return x @ self.weights, np.sqrt(np.einsum("ij,jk,ik->i", x, self.covariance, x))


def fit_linear(
    x: np.ndarray, pairs: np.ndarray, outcomes: np.ndarray, l2: float = 1.0, iterations: int = 25
) -> LinearRanker:
    """Ridge logistic regression of the outcomes on x_a - x_b (no intercept), by Newton's method."""
    import numpy as np

    x = np.asarray(x, dtype=np.float64)
    d = x.shape[1]
    diff = x[pairs[:, 0]] - x[pairs[:, 1]] if len(pairs) else np.zeros((0, d))
    w = np.zeros(d)
    hessian = l2 * np.eye(d)
    for _ in range(iterations):
        p = _sigmoid(diff @ w)
        grad = diff.T @ (p - outcomes) + l2 * w
        hessian = (diff * (p * (1 - p))[:, None]).T @ diff + l2 * np.eye(d)
        step = np.linalg.solve(hessian, grad)
        w -= step
        if np.max(np.abs(step), initial=0.0) < 1e-7:
            break
    return LinearRanker(weights=w, covariance=np.linalg.inv(hessian))


def fit_with_embeddings(
    x: np.ndarray,
    pairs: np.ndarray,
    outcomes: np.ndarray,
    prior_sigma: float = 1.5,
    residual: float = 0.5,
    l2: float = 1.0,
) -> tuple[Ranking, LinearRanker]:
    """Bradley-Terry whose prior for each item is the learned ranker's prediction (variance: the
    model's own plus `residual`^2, what it cannot explain), so never-compared items are scored too."""
    import numpy as np

    model = fit_linear(x, pairs, outcomes, l2=l2)
    mean, spread = model.predict(x)
    sigma = np.minimum(np.sqrt(spread**2 + residual**2), prior_sigma * 2)
    return fit(len(x), pairs, outcomes, prior_mean=mean, prior_sigma=sigma), model


def kendall_tau(x: np.ndarray, y: np.ndarray) -> float:
    """Kendall's tau-a between two score vectors (O(n^2) memory: for up to a few thousand items)."""
    import numpy as np

    i, j = np.triu_indices(len(x), 1)
    return float(np.mean(np.sign(x[i] - x[j]) * np.sign(y[i] - y[j])))
