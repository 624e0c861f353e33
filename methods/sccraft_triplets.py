"""scCRAFT's within-batch, dual-resolution triplet construction, vectorized with tensors.

The released code (``ch2343/scCRAFT``, ``utils.create_triplets``) loops in
Python over every batch x low-resolution label of a minibatch, enumerates all index pairs with
``itertools.combinations``, samples ``min(15, #pairs)`` of them, draws as many negatives from
cells of the same batch with another low-resolution label (``min(#pairs, #negatives)``, zipped
with the pairs) and skips a triplet when anchor and positive have different high-resolution
labels. :func:`make_triplets` draws from the same distribution for all groups at once:

* distinct pairs per group: Floyd's algorithm (uniform k-subset of the ``m(m-1)/2`` pair ranks
  without enumerating them; enumerating and sorting all pairs costs ~100 ms per minibatch on a
  busy CPU when a low-resolution cluster holds hundreds of cells). Its loop runs over the
  ``n_pos`` selection slots (15), each step one tensor operation across all groups;
* distinct negatives per group: the ``n_pos`` smallest of uniform random keys over the group's
  candidate cells (a (groups x cells) matrix, small for a 1024-cell minibatch);
* pair ranks are decoded to (i < j) positions with the triangular-number formula, so anchor is
  the earlier cell of the pair in minibatch order, as with ``itertools.combinations``.
"""

from __future__ import annotations

import torch


def _rand(shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """float64 uniforms drawn on the generator's device, moved to ``device``."""
    gen_device = generator.device if generator is not None else device
    return torch.rand(shape, generator=generator, device=gen_device, dtype=torch.float64).to(device)


def _pairs_before_row(i: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Number of pairs (a < b) of an m-element set whose first index is < i: i(2m - i - 1)/2."""
    return i * (2 * m - i - 1) // 2


def decode_pair_rank(rank: torch.Tensor, m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Positions (i, j), i < j, of pair number ``rank`` in the row-major list of pairs of m items.

    The order is that of ``itertools.combinations(range(m), 2)``: (0,1), (0,2), ..., (1,2), ...
    """
    rank = rank.long()
    m = m.long()
    two_m1 = (2 * m - 1).double()
    i = torch.floor((two_m1 - torch.sqrt(torch.clamp(two_m1 ** 2 - 8 * rank.double(), min=0))) / 2).long()
    i = i.clamp(min=0)
    # float rounding can put i one row off near row boundaries; correct it exactly in integers
    i = torch.where(_pairs_before_row(i + 1, m) <= rank, i + 1, i)
    i = torch.where(_pairs_before_row(i, m) > rank, i - 1, i)
    j = rank - _pairs_before_row(i, m) + i + 1
    return i, j


def sample_distinct_ranks(n_items: torch.Tensor, k: torch.Tensor, n_slots: int,
                          generator: torch.Generator | None) -> torch.Tensor:
    """Per row g, ``k[g]`` distinct uniform integers from [0, n_items[g]) in random order.

    Floyd's algorithm vectorized over rows; returns (rows x n_slots) with -1 in unused slots
    (slots >= k[g]). Requires k <= n_items and k <= n_slots.
    """
    device = n_items.device
    rows = n_items.shape[0]
    chosen = torch.full((rows, n_slots), -1, dtype=torch.long, device=device)
    for s in range(n_slots):  # loop over the n_slots (15) selection slots, vectorized over groups
        active = s < k
        top = n_items - k + s  # Floyd: candidate upper bound j for this step
        t = torch.floor(_rand((rows,), generator, device) * (top + 1).double()).long()
        seen = (chosen == t.unsqueeze(1)).any(dim=1)
        pick = torch.where(seen, top, t)
        chosen[:, s] = torch.where(active, pick, torch.full_like(pick, -1))
    # Floyd's output order is biased (late slots favour large ranks); shuffle the used slots so
    # truncating to the first few (fewer negatives than pairs) keeps a uniform subset.
    keys = _rand((rows, n_slots), generator, device)
    keys = torch.where(chosen >= 0, keys, torch.full_like(keys, 2.0))
    return torch.gather(chosen, 1, torch.argsort(keys, dim=1))


def make_triplets(batch: torch.Tensor, low: torch.Tensor, high: torch.Tensor, n_pos: int = 15,
                  generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Within-batch dual-resolution triplets for one minibatch (indices into the minibatch).

    batch, low, high: integer codes per cell (batch, low- and high-resolution cluster).
    For every batch b and low-resolution label l with cells in the minibatch: ``k = min(n_pos,
    #pairs)`` distinct (anchor, positive) pairs of (b, l) cells, ``min(k, #negatives)`` distinct
    negatives from batch b with a low label != l, paired up at random; triplets whose anchor and
    positive have different high-resolution labels are dropped. Returns three long tensors of
    equal length on ``batch.device``.
    """
    if not (batch.shape == low.shape == high.shape) or batch.ndim != 1:
        raise ValueError(f"make_triplets: batch, low, high must be 1-d of equal length, got "
                         f"{tuple(batch.shape)}, {tuple(low.shape)}, {tuple(high.shape)}")
    if n_pos < 1:
        raise ValueError(f"make_triplets: n_pos must be >= 1, got {n_pos}")
    device = batch.device
    batch, low, high = batch.long(), low.long(), high.long()
    n = batch.shape[0]
    empty = torch.empty(0, dtype=torch.long, device=device)
    if n < 3:
        return empty, empty, empty
    n_low = int(low.max()) + 1
    group_keys, gid = torch.unique(batch * n_low + low, return_inverse=True)
    n_groups = group_keys.shape[0]
    group_batch = group_keys // n_low
    size = torch.bincount(gid, minlength=n_groups)
    order = torch.argsort(gid, stable=True)  # cells grouped, minibatch order kept within a group
    start = torch.cumsum(size, 0) - size

    n_pairs = size * (size - 1) // 2
    k_pairs = torch.clamp(n_pairs, max=n_pos)
    width = min(n_pos, n)
    ranks = sample_distinct_ranks(n_pairs, torch.clamp(k_pairs, max=width), width, generator)

    candidate = (batch.unsqueeze(0) == group_batch.unsqueeze(1)) & (gid.unsqueeze(0) != torch.arange(
        n_groups, device=device).unsqueeze(1))
    n_neg = candidate.sum(dim=1)
    neg_keys = torch.where(candidate, _rand((n_groups, n), generator, device), torch.full(
        (n_groups, n), 2.0, dtype=torch.float64, device=device))
    negatives = torch.topk(neg_keys, width, dim=1, largest=False).indices

    n_triplets = torch.minimum(k_pairs, n_neg)
    use = torch.arange(width, device=device).unsqueeze(0) < n_triplets.unsqueeze(1)
    rows = torch.nonzero(use, as_tuple=True)[0]
    i, j = decode_pair_rank(ranks[use], size[rows])
    anchor = order[start[rows] + i]
    positive = order[start[rows] + j]
    negative = negatives[use]
    keep = high[anchor] == high[positive]
    return anchor[keep], positive[keep], negative[keep]


def triplet_loss(z: torch.Tensor, anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor,
                 margin: float = 5.0, squared: bool = False) -> torch.Tensor:
    """Mean triplet margin loss over the given triplets; 0 (keeping the graph) when there are none.

    squared=False: ``relu(|a-p| - |a-n| + margin)`` with plain Euclidean norms, as the released
    code writes it with ``torch.norm`` (torch's TripletMarginLoss would add eps = 1e-6 inside
    each norm); squared=True: ``relu(|a-p|^2 - |a-n|^2 + margin)`` (paper eq. 5).
    """
    if anchor.numel() == 0:
        return z.sum() * 0.0
    za, zp, zn = z[anchor], z[positive], z[negative]
    if squared:
        d_pos, d_neg = ((za - zp) ** 2).sum(dim=1), ((za - zn) ** 2).sum(dim=1)
    else:
        d_pos, d_neg = torch.linalg.vector_norm(za - zp, dim=1), torch.linalg.vector_norm(za - zn, dim=1)
    return torch.relu(d_pos - d_neg + margin).mean()
