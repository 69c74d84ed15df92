"""An exact solver for scikit-learn's L2-regularised logistic regression, preconditioned and streamable.

It minimises the objective of ``LogisticRegression(C=C)`` (multinomial for
three or more classes, binomial for two) on standardised features,

    f(W, b) = mean_i cross_entropy(x_i W + b, y_i) + ||W||^2 / (2 C n),

with scipy's L-BFGS, in coordinates ``W = P V`` where ``P = (S + lambda I)^(-1/2)``
and ``S`` is the covariance of the standardised training features. The
objective and its optimum are unchanged; only the solver's path is: in these
coordinates the problem is well conditioned, so L-BFGS needs tens of
iterations where it needs thousands on the correlated activations of a deep
network. Which fits are whitened is the estimator's choice (``LinearProbe``'s
``whiten``); above ``whiten_max_width`` features the ``d x d`` covariance is too
costly and ``P`` is the identity (plain standardisation).

Rows are read through ``Rows``, block by block, from an in-memory array or an
HDF5 dataset, so a training matrix larger than memory is fitted out of core
with the same arithmetic. Standardisation is folded into the weights
(``x W' + b'`` on raw rows), so no standardised copy of the data is made.

``Rows`` of a torch namespace (``arrays.py``) hold their blocks as tensors on its device,
resident or streamed there block by block; the products with them (the loss and
gradient, the feature statistics, the loss Hessian, the whitening maps) then run on
that device, by the same code: each formula is written once, against ``rows.xp``.
L-BFGS itself (scipy) runs on the host, on the ``(d, k)`` weights and gradient.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import NamedTuple

import numpy as np
from scipy.linalg import cholesky
from scipy.linalg.lapack import dtrtri
from scipy.optimize import minimize

from .arrays import NUMPY, array_namespace

log = logging.getLogger(__name__)

BLOCK_BYTES = 4 << 20  # float32 bytes per block of rows: 4 MiB measured 1.6x faster than 32 on 3,136 columns
# on a GPU: fewer, larger products (untuned: no GPU to measure on)
DEVICE_BLOCK_BYTES = 128 << 20
WARM_PROGRESS = 0.1  # a warm fit ends with its start's gradient reduced at least tenfold (fit_logistic)


class Rows:
    """Row blocks of a float32 ``(n, d)`` matrix in memory or in an HDF5 dataset (read per block).

    With a torch namespace ``xp`` (``arrays.Torch``) the blocks are tensors on its device: the
    whole matrix is copied there once (``resident``) when it fits the namespace's memory
    budget (or as ``resident`` says), else each block is read and copied at every pass
    (streamed). ``data`` stays the host source: ``take`` and the row-space search read it.
    Blocks are ``block_bytes`` (default ``BLOCK_BYTES`` on the CPU, ``DEVICE_BLOCK_BYTES``
    on another device).
    """

    def __init__(self, data, block_bytes: int | None = None, xp=NUMPY, resident: bool | None = None) -> None:
        self.data, self.xp, self.block_bytes = data, xp, block_bytes
        self.n, self.d = data.shape
        size = block_bytes or (BLOCK_BYTES if xp.device_type == "cpu" else DEVICE_BLOCK_BYTES)
        self.step = max(1, size // (4 * max(1, self.d)))
        self.resident = None
        if xp.on_device and (xp.reserve(4 * self.n * self.d) if resident is None else resident):
            self.resident = self._upload()

    def _upload(self):
        """The whole matrix as one float32 tensor on the device, copied block by block."""
        xp = self.xp
        if xp.device_type == "cpu" and isinstance(self.data, np.ndarray) and self.data.dtype == np.float32:
            return xp.asarray(self.data)  # the host array itself: the CPU is its device
        out = xp.empty((self.n, self.d), xp.float32)
        for rows, block in Rows(self.data, DEVICE_BLOCK_BYTES):
            out[rows] = xp.asarray(block)
        return out

    @property
    def in_memory(self) -> bool:
        return isinstance(self.data, np.ndarray)

    def host(self) -> Rows:
        """These rows as NumPy blocks (themselves, if they are)."""
        return self if self.xp is NUMPY else Rows(self.data, self.block_bytes)

    def __iter__(self) -> Iterator[tuple[slice, np.ndarray]]:
        for i in range(0, self.n, self.step):
            rows = slice(i, min(i + self.step, self.n))
            if self.resident is not None:
                yield rows, self.resident[rows]
                continue
            block = np.asarray(self.data[rows], dtype=np.float32)
            yield rows, block if self.xp is NUMPY else self.xp.asarray(block)

    def take(self, index: np.ndarray) -> np.ndarray:
        """The rows ``index`` (sorted) as one in-memory float32 (NumPy) array."""
        if self.in_memory:
            return np.asarray(self.data[index], dtype=np.float32)
        out = np.empty((len(index), self.d), np.float32)
        for rows, block in self.host():
            sel = (index >= rows.start) & (index < rows.stop)
            out[sel] = block[index[sel] - rows.start]
        return out


def on(x, xp, resident: bool | None = None) -> Rows:
    """``x`` (an array or ``Rows``) as ``Rows`` of namespace ``xp`` (itself if it is)."""
    rows = x if isinstance(x, Rows) else Rows(x)
    return rows if rows.xp is xp else Rows(rows.data, rows.block_bytes, xp, resident)


def feature_stats(
    rows: Rows, covariance: bool, standardised: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Column mean and scale of ``rows`` and, if asked, the covariance of the standardised columns
    (with ``standardised=False``, of the raw columns).

    Two passes, float64 accumulation. A column counts as constant (scale 1, so it
    stays zero after centring) only when every value is the same: its float64 spread
    is then exactly 0. Any other spread is information, however small against the
    column's mean: a collapsed deep layer varies by a few float32 ulps on a constant
    offset (spread 1e-10 on a mean of 1e-3), and scikit-learn's standardisation
    (float64) keeps such columns too.
    """
    xp = rows.xp
    total = xp.zeros(rows.d)
    for _, block in rows:
        total += xp.sum(block, axis=0, dtype=xp.float64)
    # float32-representable, so the solver centres float32 blocks without rounding the mean
    mean = (xp.to_host(total) / rows.n).astype(np.float32).astype(np.float64)
    mean_x = xp.asarray(mean)
    sq = xp.zeros(rows.d)
    gram = xp.zeros((rows.d, rows.d)) if covariance else None
    for _, block in rows:
        centred = xp.astype(block, xp.float64) - mean_x
        sq += xp.einsum("ij,ij->j", centred, centred)
        if covariance:
            c32 = xp.astype(centred, xp.float32)
            gram += c32.T @ c32
    std = np.sqrt(xp.to_host(sq) / rows.n)
    constant = std == 0
    scale = np.where(constant, 1.0, std)
    cov = None if gram is None else xp.to_host(gram) / rows.n / (np.outer(scale, scale) if standardised else 1.0)
    return mean, scale, cov


def row_space(rows: Rows, mean, scale, max_rank: int, rtol: float = 1e-5) -> tuple[np.ndarray, np.ndarray] | None:
    """The standardised rows in an orthonormal basis ``V`` of their span, ``(x_s V, V)``,
    when that span has at most ``max_rank`` dimensions, else ``None``; one pass.

    For an L2-regularised linear probe this is a lossless reduction: the optimum's
    standardised weights lie in the span of the standardised training rows (every
    gradient does), so fitting ``z = x_s V`` with the same penalty gives the same
    objective, with ``W = V W_z``. ``V`` grows block by block by the directions of
    what it misses of each block, those with a singular value above ``rtol`` of the
    largest seen (below is float32 rounding). Rows seen before a direction was
    added have coordinate 0 on it: what that drops is within the same tolerance and
    is accounted for: the basis is refused if the dropped part exceeds ``10 rtol``
    of the rows' norm overall. Stops early once the span exceeds ``max_rank``.
    """
    if spans_more_than(rows, mean, scale, max_rank, rtol):
        return None
    basis = np.zeros((rows.d, 0), np.float32)
    parts: list[np.ndarray] = []
    total = missed = top = 0.0
    mean32, scale32 = mean.astype(np.float32), scale.astype(np.float32)
    for _, block in Rows(rows.data, block_bytes=64 << 20):  # large blocks: each reads the whole basis
        xs = (block - mean32) / scale32
        coords = xs @ basis
        residual = xs - coords @ basis.T
        values, vectors = np.linalg.eigh(residual.astype(np.float64) @ residual.T.astype(np.float64))
        top = max(top, float(values[-1]))  # the first block's: the rows' own scale
        new = values > rtol**2 * top
        if new.any():
            directions = residual.T @ (vectors[:, new] / np.sqrt(values[new])).astype(np.float32)
            directions -= basis @ (basis.T @ directions)  # re-orthogonalise against rounding
            basis = np.hstack([basis, np.linalg.qr(directions)[0].astype(np.float32)])
            if basis.shape[1] > max_rank:
                return None
            coords = xs @ basis
            residual = xs - coords @ basis.T
        parts.append(coords)
        total += float(np.einsum("ij,ij->", xs, xs, dtype=np.float64))
        missed += float(np.einsum("ij,ij->", residual, residual, dtype=np.float64))
    if total == 0 or basis.shape[1] == 0 or missed > (10 * rtol) ** 2 * total:
        return None
    z = np.zeros((rows.n, basis.shape[1]), np.float32)
    start = 0
    for part in parts:  # earlier blocks: 0 on the directions added after them
        z[start : start + len(part), : part.shape[1]] = part
        start += len(part)
    return z, basis


def spans_more_than(rows: Rows, mean, scale, max_rank: int, rtol: float = 1e-5) -> bool:
    """Whether the first ``max_rank + 1`` standardised rows alone span more than ``max_rank``
    dimensions: more than ``max_rank`` singular values above ``rtol`` of the largest.

    ``row_space``'s own test applied to those rows as one block, so a quick refusal for it:
    on a full-rank 25,088-wide layer its pass would build a basis of over ``max_rank``
    directions block by block before giving up; this reads ``max_rank + 1`` rows and
    factors one ``(max_rank + 1)``-square Gram matrix (float64, built from column slices).
    """
    if rows.n <= max_rank:
        return False
    head = (np.asarray(rows.data[: max_rank + 1], np.float32) - mean.astype(np.float32)) / scale.astype(np.float32)
    gram = np.zeros((len(head), len(head)))
    for j in range(0, rows.d, 2048):
        part = head[:, j : j + 2048].astype(np.float64)
        gram += part @ part.T
    values = np.linalg.eigvalsh(gram)
    return int(np.sum(values > rtol**2 * values[-1])) > max_rank


class Preconditioner:
    """An invertible ``P``; L-BFGS runs on ``u`` with parameters ``theta = P u``.

    ``theta`` is ``vstack([W, b]).ravel()`` (``W`` standardised, ``(d, k)``).
    ``at(lam, d, k)`` returns the maps ``u -> P u``, ``grad_theta -> P^T grad_theta``
    (the gradient in ``u``) and ``theta -> P^-1 theta`` at regularisation ``lam``.
    ``P P^T`` approximates the inverse Hessian of the objective: the whitening
    ``(S + lam I)^-1`` of the feature covariance ``S`` on each column of ``W``
    (``cov``), or the loss Hessian measured at a nearby point plus the penalty
    (``hessian``). With neither it is the identity. With a torch namespace ``xp`` the whitening's
    eigendecomposition and maps run on its device (the maps take and return host vectors); the
    loss Hessian's Cholesky factor is the host's (scipy).
    """

    def __init__(self, cov: np.ndarray | None = None, hessian: np.ndarray | None = None, xp=NUMPY) -> None:
        self.kind = "curvature" if hessian is not None else "whitening" if cov is not None else "identity"
        self.hessian, self.xp = hessian, xp
        self.eig = None if cov is None else xp.linalg.eigh(xp.asarray(cov))

    def at(self, lam: float, d: int, k: int) -> tuple[Callable, Callable, Callable]:
        if self.kind == "identity":
            return (lambda u: u), (lambda g: g), (lambda t: t)
        if self.kind == "whitening":  # P = (S + lam I)^(-1/2) on each column of W, identity on b
            xp = self.xp
            values, vectors = self.eig
            root = xp.sqrt(xp.maximum(values, 0.0) + lam)
            p, p_inv = (vectors / root) @ vectors.T, (vectors * root) @ vectors.T

            def on_w(m) -> Callable:
                return lambda t: np.concatenate([xp.to_host(m @ xp.asarray(t[: d * k].reshape(d, k))).ravel(),
                                                 t[d * k :]])  # fmt: skip

            return on_w(p), on_w(p), on_w(p_inv)
        # P = L^-T with L L^T = H + lam I_W + eps: the loss Hessian at a nearby point, plus the penalty's
        h = self.hessian.copy()
        h[np.arange(d * k), np.arange(d * k)] += lam  # the penalty
        h[np.diag_indices(len(h))] += lam  # damping: the intercepts' null direction stays invertible
        chol = _damped_cholesky(h)
        inv = np.tril(dtrtri(chol, lower=1)[0])  # L^-1, once (LAPACK: 2.2x quicker than solving for I)
        return (lambda u: inv.T @ u), (lambda g: inv @ g), (lambda t: chol.T @ t)


def _damped_cholesky(h: np.ndarray) -> np.ndarray:
    """The lower Cholesky factor of ``h``, or, where rounding leaves ``h`` indefinite, of ``h``
    plus the least damping ``10^j`` times its largest diagonal entry (``j >= -12``) that has one.
    Never no preconditioner: unpreconditioned L-BFGS at a weak penalty meets its gradient
    tolerance at a warm start far from the optimum."""
    try:
        return cholesky(h, lower=True)
    except np.linalg.LinAlgError:
        top = float(np.max(np.diag(h)))
        for j in range(-12, 1):
            try:
                chol = cholesky(h + 10.0**j * top * np.eye(len(h)), lower=True)
            except np.linalg.LinAlgError:
                continue
            log.info("the loss Hessian is indefinite by rounding: damped by %.0e of its largest entry", 10.0**j)
            return chol
        raise


def loss_hessian(x: np.ndarray, w: np.ndarray, b: np.ndarray, mean, scale) -> np.ndarray:
    """Hessian of the mean cross-entropy in ``theta = vstack([W, b]).ravel()`` on raw rows ``x``.

    Entry ``((j, c), (l, e))`` is ``mean_i xt_ij xt_il (p_ic [c == e] - p_ic p_ie)`` over the
    free classes ``c, e`` (all classes, or class 1 alone for a binary problem), with
    ``xt = [standardised x, 1]``. One ``(d+1)k``-square matrix, its products taken in float64:
    with all ``k`` classes free it is singular (adding one vector to every class's weights
    changes no probability), and float32 products put its smallest eigenvalues at about
    -3e-6 on 2,000 rows of a 128-wide MLP layer, below the penalty ``lam`` of every
    ``C >= 100`` on 50,000 rows, where the preconditioner's Cholesky factor then does not exist.
    ``x`` may be a torch tensor: the products then run on its device, and the Hessian is
    returned to the host.
    """
    xp = array_namespace(x)
    mean, scale, w, b = (xp.asarray(a) for a in (mean, scale, w, b))
    m, d = x.shape
    k = w.shape[1]
    xt = xp.hstack([(xp.astype(x, xp.float64) - mean) / scale, xp.ones((m, 1))])
    z = xp.matmul(xt[:, :d], w) + b
    if k == 1:
        z = xp.hstack([xp.zeros((m, 1)), z])
    z -= xp.max(z, axis=1, keepdims=True)
    prob = xp.exp(z)
    prob /= xp.sum(prob, axis=1, keepdims=True)
    free = prob[:, 1:] if k == 1 else prob
    cross = (xt[:, :, None] * free[:, None, :]).reshape(m, -1)
    h = -(cross.T @ cross).reshape(d + 1, k, d + 1, k)
    for c in range(k):
        h[:, c, :, c] += xt.T @ (xt * free[:, c : c + 1])
    return xp.to_host(h.reshape((d + 1) * k, (d + 1) * k)) / m


def _cross_entropy(z, y, binary: bool, xp=NUMPY):
    """Summed cross-entropy (float64) at labels ``y`` of the scores ``z`` (``(n, k)``; when
    ``binary``, class 1's alone, class 0 scoring 0), and the residual ``p - onehot(y)`` of every
    class (``z``'s dtype; ``z`` may be overwritten).

    A near-separable probe's objective is a sum of tiny losses of well-classified rows:
    each is taken as ``log1p`` of the other classes' share, and its residual as minus
    that share over one plus it, never as ``log(1 + share)`` or ``p - 1`` in float32,
    which round every loss below 6e-8 to 0 (an objective L-BFGS could not descend
    within 1e-4 of its optimum on a 12,544-wide convnet layer)."""
    if binary:
        z = xp.hstack([xp.zeros((len(z), 1), z.dtype), z])
    idx = xp.arange(len(y))
    top = xp.argmax(z, axis=1)
    z -= z[idx, top][:, None]
    e = xp.exp(z)
    e[idx, top] = 0.0
    rest = xp.sum(e, axis=1)  # the other classes' share: log1p and 1 - p_top from it keep tiny losses
    loss = xp.sum(xp.log1p(rest, dtype=xp.float64)) - xp.sum(z[idx, y], dtype=xp.float64)  # float64
    e /= (1.0 + rest)[:, None]
    e[idx, top] = 1.0 / (1.0 + rest)
    e[idx, y] -= 1.0
    e[idx, y] = xp.where(top == y, -(rest / (1.0 + rest)), e[idx, y])  # no mask: a GPU need not sync
    return loss, e


def _on_rows(xp, w: np.ndarray, mean, scale):
    """``w`` scaled to act on raw centred rows, and the mean to centre them by, float32 on ``xp``'s
    device.

    Each block is centred before the product: a collapsed deep layer's columns sit
    at up to 1e5 standard deviations from zero, and ``x @ (w / scale)`` would lose
    that factor of float32's precision to cancellation against the intercept (a
    noisy objective that stopped a probe 1e-3 from its optimum)."""
    return xp.asarray((w / scale[:, None]).astype(np.float32)), xp.asarray(mean.astype(np.float32))


def _loss_grad(rows: Rows, y: np.ndarray, w: np.ndarray, b: np.ndarray, mean, scale, binary: bool):
    """Mean cross-entropy and its gradient in (standardised ``w``, ``b``), from raw rows
    (``_cross_entropy`` of each centred block, ``_on_rows``).

    On ``rows.xp``'s device (``y`` there too, or copied there); the weights go there and the
    sums (float64) come back."""
    xp = rows.xp
    w_scaled, mean32 = _on_rows(xp, w, mean, scale)
    b32 = xp.asarray(b.astype(np.float32))
    y = xp.asarray(y)
    grad_raw = xp.zeros(w.shape)
    residual_sum = xp.zeros(w.shape[1])
    loss = 0.0
    for sl, block in rows:
        block = block - mean32
        block_loss, e = _cross_entropy(block @ w_scaled + b32, y[sl], binary, xp)
        loss += block_loss
        r = e[:, 1:] if binary else e
        grad_raw += block.T @ r
        residual_sum += xp.sum(r, axis=0, dtype=xp.float64)
    n = rows.n
    grad_w = xp.to_host(grad_raw) / scale[:, None] / n
    return float(loss) / n, grad_w, xp.to_host(residual_sum) / n


def _scores(rows: Rows, w: np.ndarray, mean, scale) -> np.ndarray:
    """The standardised rows times ``w`` (no intercept), float64 on the host: one pass."""
    xp = rows.xp
    w_scaled, mean32 = _on_rows(xp, w, mean, scale)
    return np.vstack([xp.to_host(xp.astype((block - mean32) @ w_scaled, xp.float64)) for _, block in rows])


def _optimal_intercepts(z: np.ndarray, y: np.ndarray, b: np.ndarray, binary: bool) -> tuple[np.ndarray, float]:
    """Newton's method on the intercepts alone, the scores ``z`` (without them) fixed, from ``b``:
    the minimising intercepts, and how much lower the loss is there than at ``b``. float64, on
    the host."""
    n, idx = len(y), np.arange(len(y))

    def at(b: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        loss, r = _cross_entropy(z + b, y, binary)
        p = r.copy()
        p[idx, y] += 1.0
        if binary:
            p, r = p[:, 1:], r[:, 1:]
        return float(loss) / n, r.mean(axis=0), np.diag(p.mean(axis=0)) - p.T @ p / n

    loss, g, h = at(b)
    start = loss
    for _ in range(50):
        step = np.linalg.lstsq(h, g, rcond=1e-10)[0]  # the softmax's shift leaves h singular
        if float(g @ step) <= 1e-15 * loss:
            break
        t = 1.0
        while t > 1e-10:  # backtracking, Armijo
            trial = at(b - t * step)
            if trial[0] <= loss - 1e-4 * t * float(g @ step):
                break
            t /= 2
        else:
            break
        b = b - t * step
        loss, g, h = trial
    return b, start - loss


def _entropy(p: np.ndarray) -> np.ndarray:
    """Each row's entropy (nats) of the distributions ``p`` (``(n, K)``, or ``(K,)``); 0 log 0 = 0."""
    return -np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0), axis=-1)


def _feasible_residuals(p: np.ndarray, y: np.ndarray, binary: bool) -> tuple[float, np.ndarray]:
    """A dual point of the probe's objective made feasible, from the model's class probabilities
    ``p`` (``(n, K)``, every class; float64): a lower bound on its mean conjugate term (an
    entropy), and the dual variables ``(n, k)``.

    The dual variables are the residuals ``q_i - onehot(y_i)`` of distributions ``q_i`` whose
    sum over the rows is the class counts (the unpenalised intercepts' constraint). The
    model's own ``p_i`` satisfy it only at optimal intercepts; otherwise each is mixed with one
    fixed distribution ``c``, ``q_i = (1 - t) p_i + t c``, the least ``t`` that keeps ``c`` a
    distribution. By concavity, the mean entropy of the ``q_i`` is at least ``(1 - t)`` times
    that of the ``p_i`` plus ``t`` times ``c``'s."""
    n, classes = p.shape
    counts = np.bincount(y, minlength=classes).astype(np.float64)
    total = p.sum(axis=0)
    over = total > counts
    t = float(np.max(1.0 - counts[over] / total[over])) if over.any() else 0.0
    t = min(max(t, 0.0), 1.0)
    entropy = float(np.mean(_entropy(p)))
    q = (1.0 - t) * p
    if t > 0:
        c = np.clip(counts - (1.0 - t) * total, 0.0, None)
        c /= c.sum()
        entropy = (1.0 - t) * entropy + t * float(_entropy(c))
        q += t * c
    q[np.arange(n), y] -= 1.0
    return entropy, (q[:, 1:] if binary else q)


def _features_times(rows: Rows, a: np.ndarray, mean, scale) -> np.ndarray:
    """The standardised rows' transpose times ``a`` (``(n, k)``), over ``n``: one pass, float32
    products on ``rows.xp``'s device (``_loss_grad``'s), float64 sums on the host."""
    xp = rows.xp
    mean32 = xp.asarray(mean.astype(np.float32))
    out = xp.zeros((rows.d, a.shape[1]))
    for sl, block in rows:
        out += (block - mean32).T @ xp.asarray(a[sl].astype(np.float32))
    return xp.to_host(out) / scale[:, None] / rows.n


def certified_gap(
    rows: Rows, y, w: np.ndarray, b: np.ndarray, lam: float, mean, scale, binary: bool
) -> tuple[np.ndarray, float, float, float]:
    """The intercepts ``b*`` optimal for the weights ``w``, the objective ``f`` at ``(w, b*)``, a
    lower bound on the objective's minimum, and the objective at ``(w, b)``: two passes over the
    rows.

    The bound is Fenchel duality's: for dual variables ``alpha_i`` summing to zero over the
    rows, the minimum is at least ``mean_i H(alpha_i + onehot(y_i)) - |X' alpha / n|^2 /
    (2 lam)`` (``H`` the entropy, ``X`` the standardised rows), whatever the intercepts. At
    ``b*`` the residuals ``p_i - onehot(y_i)`` are that point, up to the mixing of
    ``_feasible_residuals`` (which stays small once Newton's steps have converged, and makes
    the bound hold where they cannot: scores saturated by huge weights); there the bound is
    ``f - |grad_w f|^2 / (2 lam)``. Scores and entropies are float64; the one product with the
    rows is float32, so the bound holds up to its rounding (1e-8 to 1e-7 of the objective)."""
    y = np.asarray(y)
    z = _scores(rows, w, mean, scale)
    b_star, drop = _optimal_intercepts(z, y, np.asarray(b, dtype=np.float64), binary)
    loss, p = _cross_entropy(z + b_star, y, binary)
    p[np.arange(len(y)), y] += 1.0  # the residuals' probabilities
    entropy, alpha = _feasible_residuals(p, y, binary)
    g = _features_times(rows, alpha, mean, scale)
    f = float(loss) / len(y) + 0.5 * lam * float(np.sum(w * w))
    return b_star, f, entropy - float(np.sum(g * g)) / (2 * lam), f + drop


def objective(rows: Rows, y, n_classes: int, lam: float, mean, scale, w: np.ndarray, b: np.ndarray) -> float:
    """The objective at ``(w, b)`` (standardised), in float64 on the scores: one pass over the rows."""
    y = np.asarray(y)
    loss = float(_cross_entropy(_scores(rows, w, mean, scale) + b, y, n_classes == 2)[0]) / len(y)
    return loss + 0.5 * lam * float(np.sum(w * w))


def worse_than_zero(f: float, n_classes: int) -> bool:
    """Whether a start's objective ``f`` is above that of zero weights and intercepts,
    ``log n_classes``: a start worse than none (say a previous checkpoint's weights for
    features since rescaled), from which a fit starts at zero instead."""
    return f > np.log(n_classes)


class Fit(NamedTuple):
    """``fit_logistic``'s result: the standardised weights ``(d, k)`` and intercepts ``(k,)``, the
    iteration count, whether L-BFGS converged, the objective, and ``lower``, a bound below the
    minimum proven by ``certified_gap`` at this point (``None`` when no proof ended the fit)."""

    w: np.ndarray
    b: np.ndarray
    n_iter: int
    converged: bool
    objective: float
    lower: float | None = None


def fit_logistic(
    rows: Rows,
    y: np.ndarray,
    n_classes: int,
    lam: float,
    mean: np.ndarray,
    scale: np.ndarray,
    precond: Preconditioner,
    init: tuple[np.ndarray, np.ndarray] | None = None,
    tol: float = 1e-5,
    max_iter: int = 1000,
    name: str = "L-BFGS",
    gap_tol: float | None = None,
    at_zero: dict | None = None,
) -> Fit:
    """Minimise the objective at ``lam = 1 / (C n)`` from ``init`` (standardised ``w``, ``b``).

    ``y`` holds class indices ``0..n_classes-1``; ``k = 1`` for two classes, as scikit-learn.
    Converged means stopped before ``max_iter`` (restarts included: L-BFGS goes on while the
    tolerance relative to the objective reached is at least twice tighter than the one it met):
    at the gradient tolerance, or where
    no step along the search direction lowers the objective as evaluated in float32
    (a failed line search: within ~1e-7 of the optimum, measured 4e-9 to 5e-7 on
    trained and untrained MLP layers against float64 scikit-learn). With ``gap_tol``, a fit also
    stops, converged, once ``certified_gap`` proves its objective within ``gap_tol`` (relative)
    of the minimum, with the intercepts it found optimal there: tried at an iterate whose
    weight gradient alone would allow it, then again only after a tenth more iterations (at
    least five; each try is two passes over the rows). A long fit logs its iteration and
    objective once a minute, prefixed by ``name``. ``at_zero``, a dict the caller keeps for these
    rows and labels, holds the objective and gradient at zero weights (the same at every ``lam``;
    a cold fit's start, a warm fit's reference for its stopping rule): the first fit to need them
    stores them there, and later fits read them.
    """
    binary = n_classes == 2
    d, k = rows.d, 1 if binary else n_classes
    y_host, y = np.asarray(y), rows.xp.asarray(y)  # once: each evaluation then sends only the weights
    w0, b0 = init if init is not None else (np.zeros((d, k)), np.zeros(k))
    to_theta, grad_to_u, to_u = precond.at(lam, d, k)
    # The latest and the lowest evaluations (point, objective, gradient in theta and in u): the start,
    # evaluated here for the stopping rule, and a restart's point (L-BFGS's best iterate, often a few
    # line-search trials back) are not passed over again when scipy asks for them; certify reads
    # an iterate's gradient there.
    seen: dict[str, dict] = {}
    if at_zero:  # and the caller's evaluation at zero weights (cold fits start there)
        seen["zero"] = {"u": np.zeros((d + 1) * k), "f": at_zero["f"], "grad": at_zero["grad"],
                        "g_u": grad_to_u(at_zero["grad"])}  # fmt: skip

    def evaluation(u: np.ndarray) -> dict | None:
        return next((e for e in seen.values() if np.array_equal(e["u"], u)), None)

    def fun(u: np.ndarray) -> tuple[float, np.ndarray]:
        e = evaluation(u)
        if e is None:
            theta = to_theta(u)
            w, b = theta[: d * k].reshape(d, k), theta[d * k :]
            loss, grad_w, grad_b = _loss_grad(rows, y, w, b, mean, scale, binary)
            loss += 0.5 * lam * float(np.sum(w * w))
            grad = np.concatenate([(grad_w + lam * w).ravel(), grad_b])
            e = {"u": u.copy(), "f": loss, "grad": grad, "g_u": grad_to_u(grad)}
            seen["latest"] = e
            if "lowest" not in seen or loss <= seen["lowest"]["f"]:
                seen["lowest"] = e
            if at_zero is not None and not np.any(u):  # theta = P 0 = 0: no penalty, the same at every lam
                seen["zero"] = e
                at_zero.update(f=loss, grad=grad)
        return e["f"], e["g_u"].copy()

    u0 = to_u(np.concatenate([np.ravel(w0), b0]))
    # Stop at |g| <= tol * min(1, f(start), |g(0)|), g(0) the gradient at zero weights (a cold fit's
    # start): relative to the objective once it is below 1 (a near-separable probe's objective is
    # ~1e-3: an absolute tolerance would stop it percents from its optimum), and to the gradient at
    # zero, so a layer whose every gradient is small from the start (tiny unstandardised features,
    # barely informative ones) is not declared converged at its first iterate. A warm fit pays one
    # evaluation for the reference.
    f0, g0 = fun(u0)  # scipy's first evaluation, of the start, is this one (the latest or the lowest)
    if init is not None:
        f_zero, g_zero = fun(np.zeros_like(u0))
        if worse_than_zero(f0, n_classes):
            log.info("%s: the start's objective %.6g is above zero weights' %.6g: starting from zero", name, f0, f_zero)
            u0, f0, g0 = np.zeros_like(u0), f_zero, g_zero
        g_start, g0 = float(np.abs(g0).max()), g_zero
    g_max = float(np.abs(g0).max())

    def target(f: float) -> float:
        return tol * min(1.0, float(f), g_max)

    # A warm start from another C's solution can meet the target far from this C's optimum: its
    # gradient is the change of penalty, (lam_start - lam) w, tiny at weak regularisation (C=10's
    # solution at C=100 on a 128-wide MLP layer, plain standardised L-BFGS as on every point the
    # loss Hessian does not precondition: 2.2e-4 against a target of 2.5e-4; the walk, stopped
    # there at 0 iterations, chose C=1 at 15.9% validation error over C=100's 14.9%). A warm fit
    # reduces its start's gradient at least WARM_PROGRESS-fold.
    gtol = target(f0) if init is None else min(target(f0), WARM_PROGRESS * g_start)
    t0, clock = time.time(), {"iterations": 0, "line": time.time()}
    proof: dict = {"next": 0, "solution": None}

    def certify(u: np.ndarray, f: float) -> bool:
        """Whether the iterate ``u`` is proven within ``gap_tol`` of the minimum (then kept)."""
        e = evaluation(u)
        if gap_tol is None or clock["iterations"] < proof["next"] or e is None:
            return False
        g_w = e["grad"][: d * k]
        if float(g_w @ g_w) / (2 * lam) > gap_tol * f:
            return False
        proof["next"] = clock["iterations"] + max(5, clock["iterations"] // 10)
        theta = to_theta(u)
        w = theta[: d * k].reshape(d, k).copy()  # theta may be a view of scipy's iterate
        b_star, f_star, lower, _ = certified_gap(rows, y_host, w, theta[d * k :], lam, mean, scale, binary)
        if lower <= 0 or f_star - lower > gap_tol * lower:
            return False
        proof["solution"] = (w, b_star, f_star, lower)
        return True

    def progress(intermediate_result) -> None:
        clock["iterations"] += 1
        if certify(intermediate_result.x, intermediate_result.fun):
            raise StopIteration  # scipy's way for a callback to end the fit
        if time.time() - clock["line"] >= 60:
            clock["line"] = time.time()
            log.info("%s: iteration %d, objective %.6g (%.0f s)", name, clock["iterations"],
                     intermediate_result.fun, clock["line"] - t0)  # fmt: skip

    def descend(u: np.ndarray, gtol: float, max_iter: int):
        return minimize(fun, u, jac=True, method="L-BFGS-B", callback=progress,
                        options={"maxiter": max_iter, "gtol": gtol, "ftol": 64 * np.finfo(float).eps,
                                 "maxls": 50})  # fmt: skip

    res = descend(u0, gtol, max_iter)
    nit = res.nit
    # A cold start's objective is ~log k, far above a near-separable probe's optimum (~1e-3), so the
    # stop relative to it can be loose (3e-3 above the optimum on the trained convnet's fc1_postact
    # at C=1, plain; 1.1e-3 whitened), as can a warm start from another C: go on from there, each
    # time with a fresh L-BFGS memory, while the objective reached has at least halved the target
    # and the gradient misses the new one (a target set from an objective that no longer falls is
    # the float32 objective's noise floor)
    while (
        proof["solution"] is None
        and res.status == 0
        and nit < max_iter
        and target(res.fun) < gtol / 2
        and np.abs(res.jac).max() > target(res.fun)
    ):
        gtol = target(res.fun)
        res = descend(res.x, gtol, max_iter - nit)
        nit += res.nit
    if proof["solution"] is not None:
        w, b, f, lower = proof["solution"]
        log.info("%s: proven within %.0e of the minimum after %d iterations", name, gap_tol, nit)
        return Fit(w, b, int(nit), True, f, lower)
    theta = to_theta(res.x)
    converged = res.status != 1  # 1: iteration or evaluation limit
    if res.status == 2:
        log.info("L-BFGS ended after %d iterations: the line search found no lower objective "
                 "(the float32 objective's precision) at gradient norm %.2e (tol %.2e)",
                 nit, np.abs(res.jac).max(), gtol)  # fmt: skip
    return Fit(theta[: d * k].reshape(d, k), theta[d * k :], int(nit), converged, float(res.fun))
