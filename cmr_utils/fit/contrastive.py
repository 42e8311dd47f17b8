"""A two-tower linear head trained with the symmetric InfoNCE loss from the ridge-CCA solution (``ContrastiveCCA``);
torch is imported by its ``fit`` only, so the rest of the pipeline (loading a fitted head too) runs without it."""
import numpy as np

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
    Each epoch sees one photo per text, so a batch never holds a recipe twice. Single-threaded and seeded.
    """

    def __init__(self, n_components=50, shrinkage=0.5, standardize=True, seed=0, chunk_size=8192):
        self.n_components, self.shrinkage, self.standardize, self.seed, self.chunk_size = (
            n_components, shrinkage, standardize, seed, chunk_size)

    def fit(self, X, Y) -> "ContrastiveCCA":
        self._check_rows(X, Y)
        self.maps_ = [None, None]
        X, Y = np.asarray(X, np.float64), np.asarray(Y, np.float64)
        self._check_finite({"image features": X, "text features": Y})
        import torch  # only here: fitting this model is the only use of torch after encoding
        import torch.nn.functional as F

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
        before = torch.get_num_threads()
        torch.set_num_threads(1)  # then reductions, hence fits, are the same on every machine
        try:
            torch.manual_seed(self.seed)
            T = [torch.from_numpy(v.astype(np.float32)) for v in views]
            W = [torch.nn.Parameter(torch.from_numpy(w.astype(np.float32))) for w in start.weights_]
            log_scale = torch.nn.Parameter(torch.tensor(-np.log(h["temperature"]), dtype=torch.float32))
            opt = torch.optim.AdamW([*W, log_scale], lr=h["lr"], weight_decay=h["weight_decay"])

            def loss(rows):
                a, b = (F.normalize(t[rows] @ w, dim=1) for t, w in zip(T, W))
                logits = log_scale.exp().clamp(max=100.0) * a @ b.T
                target = torch.arange(len(rows))
                return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2

            def held_loss():  # mean over the held-out texts, in training-size batches
                n_batches = -(-len(held_rows) // h["batch_size"])
                batches = [torch.from_numpy(b) for b in np.array_split(held_rows, n_batches)]
                with torch.no_grad():
                    return sum(float(loss(b)) * len(b) for b in batches) / len(held_rows)

            def snapshot():
                return [w.detach().numpy().astype(np.float64) for w in W], float(log_scale.detach())

            best, state, self.best_epoch_, epoch = held_loss(), snapshot(), 0, 0
            while epoch < h["max_epochs"] and epoch - self.best_epoch_ < h["patience"]:
                epoch += 1
                order = rng.permutation(train_rows)
                order = rng.permutation(order[np.unique(text[order], return_index=True)[1]])  # one photo per text
                for s in range(0, len(order) - 1, h["batch_size"]):
                    opt.zero_grad()
                    loss(torch.from_numpy(order[s:s + h["batch_size"]])).backward()
                    opt.step()
                if (v := held_loss()) < best:
                    best, state, self.best_epoch_ = v, snapshot(), epoch
        finally:
            torch.set_num_threads(before)
        (wx, wy), log_s = state
        A, B = views[0] @ wx, views[1] @ wy
        corrs = np.array([np.corrcoef(A[:, j], B[:, j])[0, 1] for j in range(A.shape[1])])
        order = np.argsort(-corrs, kind="stable")
        self.corrs_, self.temperature_ = corrs[order], float(np.exp(-log_s))
        self.means_ = [m for m, _ in scale]
        self.weights_ = [w[:, order] / s[:, None] for w, (_, s) in zip((wx, wy), scale)]
        return self._finish()
