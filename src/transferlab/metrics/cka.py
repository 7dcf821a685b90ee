"""Linear centred kernel alignment (CKA) between representations.

`linear_cka` is the full-batch estimator of Kornblith et al. (ICML 2019), optionally debiased.
`MinibatchCKA` follows Nguyen, Raghu, Kornblith (ICLR 2021): it accumulates the *unbiased*
HSIC estimator (Song et al. 2012) over minibatches, for every (layer of model A, layer of
model B) pair at once, so features never have to be held for the whole data set:
CKA = mean_k HSIC1(K_k, L_k) / sqrt(mean_k HSIC1(K_k, K_k) * mean_k HSIC1(L_k, L_k)).
"""
from __future__ import annotations

import torch


def _flat(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(x.shape[0], -1).double()


def linear_cka(x: torch.Tensor, y: torch.Tensor, debiased: bool = False) -> float:
    """Linear CKA of two representations of the same n examples ((n, ...) each, flattened).

    Biased (Kornblith et al. 2019): ||Yc^T Xc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F), computed in
    feature space or, where that is cheaper (more features than examples), as the same value from
    the n x n Gram matrices: <Kx, Ky>_F / (||Kx||_F ||Ky||_F) with Kx = Xc Xc^T.
    `debiased=True` uses the unbiased HSIC estimator instead (needs n > 3).
    """
    x, y = _flat(x), _flat(y)
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"linear_cka needs the same number of examples; got {x.shape[0]} and {y.shape[0]}.")
    if debiased:
        grams = torch.stack([x @ x.T, y @ y.T])
        h = unbiased_hsic(grams, grams)
        return float(h[0, 1] / torch.sqrt(h[0, 0] * h[1, 1]))
    x, y = x - x.mean(0), y - y.mean(0)
    (n, dx), dy = x.shape, y.shape[1]
    if n * (dx + dy) < dx * dy + dx * dx + dy * dy:   # the Gram form's FLOPs against the feature form's
        kx, ky = x @ x.T, y @ y.T
        return float((kx * ky).sum() / torch.sqrt(kx.square().sum() * ky.square().sum()))
    cross = (y.T @ x).square().sum()
    return float(cross / torch.sqrt((x.T @ x).square().sum() * (y.T @ y).square().sum()))


def unbiased_hsic(grams_a: torch.Tensor, grams_b: torch.Tensor) -> torch.Tensor:
    """Unbiased HSIC (Song et al. 2012) for every pair of Gram matrices: (La, n, n), (Lb, n, n) -> (La, Lb).

    HSIC1(K, L) = [tr(K~L~) + 1'K~1 1'L~1 / ((n-1)(n-2)) - 2/(n-2) 1'K~L~1] / (n(n-3)),
    K~ = K with a zero diagonal. All pairs come from three matrix products.
    """
    n = grams_a.shape[-1]
    if n < 4:
        raise ValueError(f"The unbiased HSIC needs at least 4 examples per batch. Got {n} instead.")
    eye = torch.eye(n, dtype=torch.bool, device=grams_a.device)
    ka = grams_a.double().masked_fill(eye, 0.0)
    kb = grams_b.double().masked_fill(eye, 0.0)
    trace = ka.flatten(1) @ kb.flatten(1).T                       # tr(K~ L~) (both symmetric)
    row_a, row_b = ka.sum(-1), kb.sum(-1)                         # K~ 1, L~ 1
    totals = row_a.sum(-1)[:, None] * row_b.sum(-1)[None, :]      # 1'K~1 * 1'L~1
    cross = row_a @ row_b.T                                       # 1'K~ L~1
    return (trace + totals / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * cross) / (n * (n - 3))


def paired_cka(feats_a: list[torch.Tensor], feats_b: list[torch.Tensor], debiased: bool = False) -> torch.Tensor:
    """(L,) CKA of feats_a[l] with feats_b[l] (same n examples), every layer from one batched pass."""
    ga, gb = gram_matrices(feats_a), gram_matrices(feats_b)
    if debiased:
        cross, self_a, self_b = (torch.diagonal(unbiased_hsic(u, v)) for u, v in ((ga, gb), (ga, ga), (gb, gb)))
    else:
        n = ga.shape[-1]
        centre = torch.eye(n, dtype=ga.dtype, device=ga.device) - 1.0 / n
        ga, gb = centre @ ga @ centre, centre @ gb @ centre
        cross, self_a, self_b = [(u * v).sum((1, 2)) for u, v in ((ga, gb), (ga, ga), (gb, gb))]
    return (cross / torch.sqrt(self_a * self_b)).float().cpu()


def gram_matrices(feats: list[torch.Tensor]) -> torch.Tensor:
    """(L, batch, batch) linear Gram matrices of a list of per-layer (batch, ...) features (float64)."""
    return torch.stack([(f := _flat(x)) @ f.T for x in feats])


class MinibatchCKA:
    """Minibatch linear CKA between every layer of model A and every layer of model B.

    Call `update(feats_a, feats_b)` once per batch with lists of (batch, ...) features of the
    same examples, then `value()` is the (La, Lb) CKA matrix.
    """

    def __init__(self) -> None:
        self.cross = self.self_a = self.self_b = None
        self.batches = 0

    def update(self, feats_a: list[torch.Tensor], feats_b: list[torch.Tensor]) -> None:
        self.update_grams(gram_matrices(feats_a), gram_matrices(feats_b))

    def update_grams(self, ga: torch.Tensor, gb: torch.Tensor) -> None:
        """Same as `update`, from (L, batch, batch) Gram matrices (compute each model's once per batch)."""
        hab = unbiased_hsic(ga, gb)
        haa = torch.diagonal(unbiased_hsic(ga, ga))
        hbb = torch.diagonal(unbiased_hsic(gb, gb))
        if self.cross is None:
            self.cross, self.self_a, self.self_b = hab, haa, hbb
        else:
            self.cross, self.self_a, self.self_b = self.cross + hab, self.self_a + haa, self.self_b + hbb
        self.batches += 1

    def value(self) -> torch.Tensor:
        if self.cross is None:
            raise ValueError("MinibatchCKA.value() needs at least one update().")
        return (self.cross / torch.sqrt(self.self_a[:, None] * self.self_b[None, :])).float().cpu()


def minibatch_cka(feats_a: list[torch.Tensor], feats_b: list[torch.Tensor], batch_size: int) -> torch.Tensor:
    """(La, Lb) minibatch CKA of two lists of per-layer features of the same n examples."""
    n = feats_a[0].shape[0]
    cka = MinibatchCKA()
    for start in range(0, n - batch_size + 1, batch_size):  # equal batches: each HSIC term has the same n
        sl = slice(start, start + batch_size)
        cka.update([f[sl] for f in feats_a], [f[sl] for f in feats_b])
    return cka.value()
