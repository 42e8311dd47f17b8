"""A two-tower linear head trained with the symmetric InfoNCE loss from the ridge-CCA solution (``ContrastiveCCA``):
the loss, its gradient and AdamW in numpy (float64, one BLAS thread), so fitting needs no torch."""
import numpy as np
from scipy.special import logsumexp

from cmr_utils.cluster import one_blas_thread

from cmr_utils.fit.linear import RidgeCCA
from cmr_utils.fit.space import Space, scaler

# InfoNCE training (not in the cache key: bump cache.VERSION when changing them)
CONTRASTIVE = {"lr": 1e-4, "weight_decay": 1e-4, "batch_size": 256, "max_epochs": 200, "patience": 10,
               "holdout": 0.1, "temperature": 0.07}


class ContrastiveCCA(Space):
    """Two linear towers trained with the symmetric InfoNCE loss (CLIP, Radford et al. 2021).

    z = normalise(((V - mean) / std) @ W) per view; the loss is the cross-entropy of each pair's cosine against
    every other pair in the mini-batch, both ways, scaled by a learnable inverse temperature. W starts from the
    ridge-CCA solution with this ``shrinkage``, and AdamW moves it from there. Early stopping: a seeded
    ``holdout`` share of the training pairs' texts (with all their photos) is kept out of training and scores
    the loss after each epoch; the weights with the lowest held-out loss are kept (the CCA start included).
    Each epoch sees one photo per text, so a batch never holds a recipe twice. One BLAS thread, seeded.
    """

    def __init__(self, n_components=50, shrinkage=0.5, standardize=True, seed=0, chunk_size=8192):
        self.n_components, self.shrinkage, self.standardize, self.seed, self.chunk_size = (
            n_components, shrinkage, standardize, seed, chunk_size)

    def fit(self, X, Y) -> "ContrastiveCCA":
        self._check_rows(X, Y)
        self.maps_ = [None, None]
        X, Y = np.asarray(X, np.float64), np.asarray(Y, np.float64)
        self._check_finite({"image features": X, "text features": Y})
        h = CONTRASTIVE
        scale = [scaler(V, self.standardize, self.chunk_size) for V in (X, Y)]
        views = [(V - m) / s for V, (m, s) in zip((X, Y), scale)]
        text = np.unique(Y, axis=0, return_inverse=True)[1].ravel()  # a recipe's photos share its text row
        rng = np.random.default_rng(self.seed)
        n_texts = text.max() + 1
        held = np.isin(text, rng.permutation(n_texts)[:max(1, round(h["holdout"] * n_texts))])
        train_rows, held_rows = np.flatnonzero(~held), np.flatnonzero(held)
        held_rows = held_rows[np.unique(text[held_rows], return_index=True)[1]]
        start = RidgeCCA(self.n_components, self.shrinkage, standardize=False).fit(
            views[0][train_rows], views[1][train_rows])
        params = [np.array(w, np.float64) for w in start.weights_] + [np.array(-np.log(h["temperature"]))]
        # (Wx, Wy, log scale)
        opt = _AdamW(params, h["lr"], h["weight_decay"])
        held_batches = np.array_split(held_rows, -(-len(held_rows) // h["batch_size"]))

        def held_loss():  # mean over the held-out texts, in training-size batches
            return sum(_info_nce(views, params, b)[0] * len(b) for b in held_batches) / len(held_rows)

        with one_blas_thread():  # then a fit is the same on every machine
            best, state, self.best_epoch_, epoch = held_loss(), [p.copy() for p in params], 0, 0
            while epoch < h["max_epochs"] and epoch - self.best_epoch_ < h["patience"]:
                epoch += 1
                order = rng.permutation(train_rows)
                order = rng.permutation(order[np.unique(text[order], return_index=True)[1]])  # one photo per text
                for s in range(0, len(order) - 1, h["batch_size"]):
                    opt.step(_info_nce(views, params, order[s:s + h["batch_size"]])[1])
                if (v := held_loss()) < best:
                    best, state, self.best_epoch_ = v, [p.copy() for p in params], epoch
        wx, wy, log_s = state
        A, B = views[0] @ wx, views[1] @ wy
        corrs = np.array([np.corrcoef(A[:, j], B[:, j])[0, 1] for j in range(A.shape[1])])
        order = np.argsort(-corrs, kind="stable")
        self.corrs_, self.temperature_ = corrs[order], float(np.exp(-log_s))
        self.means_ = [m for m, _ in scale]
        self.weights_ = [w[:, order] / s[:, None] for w, (_, s) in zip((wx, wy), scale)]
        return self._finish()


def _info_nce(views, params, rows) -> tuple[float, list[np.ndarray]]:
    """The symmetric InfoNCE loss of the pairs ``rows`` and its gradient with respect to ``params``
    (Wx, Wy, log scale): z = normalise(view @ W), logits = min(e^log_scale, 100) · zx zyᵀ, the cross-entropy
    of each pair against the batch, both ways, averaged."""
    wx, wy, log_s = params
    U = [v[rows] @ w for v, w in zip(views, (wx, wy))]
    norms = [np.linalg.norm(u, axis=1, keepdims=True) for u in U]
    a, b = (u / n for u, n in zip(U, norms))
    scale = min(float(np.exp(log_s)), 100.0)
    cos = a @ b.T
    logits = scale * cos
    lse_rows, lse_cols = logsumexp(logits, axis=1, keepdims=True), logsumexp(logits, axis=0, keepdims=True)
    p_rows, p_cols = np.exp(logits - lse_rows), np.exp(logits - lse_cols)
    n, diag = len(rows), np.trace(logits)
    loss = ((lse_rows.sum() - diag) + (lse_cols.sum() - diag)) / (2 * n)
    G = (p_rows + p_cols - 2 * np.eye(n)) / (2 * n)  # d loss / d logits
    da, db = scale * G @ b, scale * G.T @ a
    du = [(d - z * (z * d).sum(1, keepdims=True)) / nrm for d, z, nrm in zip((da, db), (a, b), norms)]
    grads = [v[rows].T @ d for v, d in zip(views, du)]
    d_log_s = scale * float((G * cos).sum()) if np.exp(log_s) < 100.0 else 0.0
    return float(loss), [*grads, np.array(d_log_s)]


class _AdamW:
    """AdamW (Loshchilov & Hutter, 2019) as torch.optim.AdamW defaults it: betas (0.9, 0.999), eps 1e-8,
    decoupled weight decay; updates ``params`` in place."""

    def __init__(self, params, lr, weight_decay, betas=(0.9, 0.999), eps=1e-8):
        self.params, self.lr, self.wd, self.betas, self.eps, self.t = params, lr, weight_decay, betas, eps, 0
        self.m, self.v = [np.zeros_like(p) for p in params], [np.zeros_like(p) for p in params]

    def step(self, grads) -> None:
        self.t += 1
        b1, b2 = self.betas
        for p, g, m, v in zip(self.params, grads, self.m, self.v):
            p *= 1 - self.lr * self.wd
            m[...] = b1 * m + (1 - b1) * g
            v[...] = b2 * v + (1 - b2) * g * g
            p -= self.lr * (m / (1 - b1 ** self.t)) / (np.sqrt(v / (1 - b2 ** self.t)) + self.eps)
