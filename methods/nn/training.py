"""Training-loop helpers shared by the torch models.

The loops keep the whole data matrix on the device as one tensor and index minibatches out
of it (no DataLoader, no per-step host copies), accumulate losses on the device and sync with
the host once per epoch (loss history, NaN guard). Random draws come from a CPU
``torch.Generator`` so the same seed gives the same minibatches on every device.
"""

from __future__ import annotations

import contextlib
import os
import random
import sys
import warnings
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from methods.base import TrainingDivergedError


def seed_all(seed: int) -> torch.Generator:
    """Seed python, numpy and torch (CPU and CUDA); returns a CPU generator seeded the same."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    gen = torch.Generator()
    gen.manual_seed(seed)
    return gen


def pick_device(device: str) -> torch.device:
    """"auto" -> cuda when available, else cpu; an explicit device must exist."""
    device = str(device)
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise ValueError(f"unknown device '{device}' (use auto, cpu, cuda or cuda:N)") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device '{device}' requested but torch sees no CUDA GPU")
    return dev


def to_device_tensor(x: Any, device: torch.device | str, dtype: torch.dtype = torch.float32,
                     chunk_rows: int = 16384) -> torch.Tensor:
    """Dense tensor on ``device`` from a numpy array, scipy sparse matrix or tensor.

    Sparse input is densified in row chunks straight into a preallocated device tensor, so the
    host never holds more than one dense chunk.
    """
    device = torch.device(device)
    if isinstance(x, torch.Tensor):
        return x.to(device=device, dtype=dtype)
    if sp.issparse(x):
        x = x.tocsr()
        out = torch.empty(x.shape, dtype=dtype, device=device)
        for start in range(0, x.shape[0], chunk_rows):
            block = x[start:start + chunk_rows].toarray()
            out[start:start + block.shape[0]] = torch.from_numpy(block).to(device=device, dtype=dtype)
        return out
    arr = np.asarray(x)
    return torch.from_numpy(np.ascontiguousarray(arr)).to(device=device, dtype=dtype)


def one_hot(codes: Any, n: int, device: torch.device | str | None = None) -> torch.Tensor:
    """float32 one-hot matrix (len(codes) x n) of integer codes in [0, n)."""
    codes_t = torch.as_tensor(np.asarray(codes) if not isinstance(codes, torch.Tensor) else codes,
                              dtype=torch.long, device=device)
    if codes_t.numel() and (int(codes_t.min()) < 0 or int(codes_t.max()) >= n):
        raise ValueError(f"one_hot: codes must be in [0, {n}), got range "
                         f"[{int(codes_t.min())}, {int(codes_t.max())}]")
    return torch.nn.functional.one_hot(codes_t, n).to(torch.float32)


def minibatch_indices(n: int, batch_size: int, generator: torch.Generator, device: torch.device | str,
                      shuffle: bool = True, drop_last: bool = False) -> list[torch.Tensor]:
    """One epoch of minibatch index tensors on ``device`` (one randperm per epoch)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    order = order.to(device)
    batches = list(torch.split(order, batch_size))
    if drop_last and batches and batches[-1].numel() < batch_size:
        batches.pop()
    return batches


def holdout_split(n: int, share: float, seed: int, device: torch.device | str
                  ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """(training, held-out) sorted cell indices with ``round(share * n)`` cells held out, drawn
    on the CPU from ``seed`` (the same split on every device); (None, None) when ``share`` is 0."""
    if share <= 0:
        return None, None
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_out = int(round(share * n))
    return order[n_out:].sort().values.to(device), order[:n_out].sort().values.to(device)


def balanced_indices(group_codes: Any, per_group: int, generator: torch.Generator,
                     device: torch.device | str) -> torch.Tensor:
    """``per_group`` cells from every group, shuffled together (scCRAFT's per-epoch sampling).

    A group with at least ``per_group`` cells is sampled without replacement, a smaller one
    with replacement. Returns one index tensor on ``device``; split it with ``torch.split``.
    """
    codes = torch.as_tensor(np.asarray(group_codes) if not isinstance(group_codes, torch.Tensor)
                            else group_codes.cpu(), dtype=torch.long)
    picked = []
    for g in torch.unique(codes):
        members = torch.nonzero(codes == g, as_tuple=True)[0]
        if members.numel() >= per_group:
            pick = members[torch.randperm(members.numel(), generator=generator)[:per_group]]
        else:
            pick = members[torch.randint(0, members.numel(), (per_group,), generator=generator)]
        picked.append(pick)
    allidx = torch.cat(picked)
    return allidx[torch.randperm(allidx.numel(), generator=generator)].to(device)


PRECISIONS = ("fp32", "bf16-mixed")


def cpu_has_native_bf16() -> bool:
    """True when the CPU multiplies bfloat16 matrices in hardware (AVX512-BF16 or AMX-BF16 flags,
    Linux /proc/cpuinfo); without them oneDNN emulates bf16 and mixed precision is slower."""
    try:
        with open("/proc/cpuinfo") as fh:
            flags = next((line.split(":", 1)[1].split() for line in fh if line.startswith("flags")), [])
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """Context for a training step's forward pass and losses in ``precision``.

    "fp32": plain float32. "bf16-mixed": ``torch.autocast`` to bfloat16, i.e. matrix products in
    bf16 with fp32 accumulation while parameters, optimizer state and gradients stay fp32 (no loss
    scaling needed: bf16 has fp32's exponent range). Models keep likelihoods, KL terms and losses
    in fp32 (small heads in fp32; a bf16 output is promoted when combined with fp32 data).
    """
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision != "bf16-mixed":
        raise ValueError(f"unknown precision '{precision}'; known: {', '.join(PRECISIONS)}")
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError(f"precision 'bf16-mixed' needs a GPU with bfloat16 support; {device} has none")
    if device.type == "cpu" and not cpu_has_native_bf16():
        warnings.warn("precision 'bf16-mixed' on a CPU without AVX512-BF16/AMX: bf16 matrix products are "
                      "emulated and slower than fp32", RuntimeWarning, stacklevel=2)
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def adam(params: Iterable, **kwargs: Any) -> torch.optim.Adam:
    """``torch.optim.Adam`` in its fused form: the same update rule in one kernel per step
    instead of ~10 tensor ops (and temporaries) per parameter; ~13 % of a sysVI step on CPU."""
    return torch.optim.Adam(params, fused=True, **kwargs)


class LossHistory:
    """Per-epoch means of loss terms, accumulated on the device.

    ``add(term, value)`` takes a scalar tensor and keeps a running device-side sum (no host
    sync); ``end_epoch()`` syncs once and returns {term: epoch mean}; ``as_dict()`` gives
    {term: [mean per epoch]}.
    """

    def __init__(self) -> None:
        self._sums: dict[str, torch.Tensor] = {}
        self._counts: dict[str, int] = {}
        self.history: dict[str, list[float]] = {}

    def add(self, term: str, value: torch.Tensor) -> None:
        value = value.detach()
        if term in self._sums:
            self._sums[term] = self._sums[term] + value
            self._counts[term] += 1
        else:
            self._sums[term] = value.clone()
            self._counts[term] = 1

    def end_epoch(self) -> dict[str, float]:
        if not self._sums:
            return {}
        terms = list(self._sums)
        sums = torch.stack([self._sums[t].float().reshape(()) for t in terms]).cpu().tolist()
        means = {t: s / self._counts[t] for t, s in zip(terms, sums)}
        for t, m in means.items():
            self.history.setdefault(t, []).append(m)
        self._sums.clear()
        self._counts.clear()
        return means

    def as_dict(self) -> dict[str, list[float]]:
        return {t: list(v) for t, v in self.history.items()}


def check_finite(loss_terms: dict[str, Any], epoch: int) -> None:
    """Raise TrainingDivergedError naming the first non-finite term (floats or tensors)."""
    for term, value in loss_terms.items():
        val = float(value.detach().float().reshape(-1)[0]) if isinstance(value, torch.Tensor) else float(value)
        if not np.isfinite(val):
            raise TrainingDivergedError(
                f"training diverged: non-finite {term} at epoch {epoch} (value {val}); "
                "try a lower learning rate or check the input for NaN/inf")


def progress(iterable: Iterable, desc: str, total: int | None = None) -> Iterable:
    """tqdm progress bar on a TTY; plain iterable otherwise or when BENCH_PROGRESS=0."""
    env = os.environ.get("BENCH_PROGRESS")
    enabled = env == "1" or (env != "0" and sys.stderr.isatty())
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, total=total, leave=False)


@contextlib.contextmanager
def eval_mode(*modules: torch.nn.Module) -> Iterator[None]:
    """Put modules in eval mode (BatchNorm running stats, no dropout) and restore afterwards.

    Gradients still flow (this is not no_grad): sysVI encodes VampPrior pseudo-inputs this way.
    """
    states = [m.training for m in modules]
    for m in modules:
        m.eval()
    try:
        yield
    finally:
        for m, state in zip(modules, states):
            m.train(state)


def _owner_module(fn: Callable) -> torch.nn.Module | None:
    if isinstance(fn, torch.nn.Module):
        return fn
    owner = getattr(fn, "__self__", None)
    return owner if isinstance(owner, torch.nn.Module) else None


def encode_in_batches(fn: Callable, X: Any, cov: Any = None, batch_size: int = 4096, *,
                      module: torch.nn.Module | None = None,
                      device: torch.device | str | None = None) -> np.ndarray | tuple[np.ndarray, ...]:
    """Run ``fn(x_chunk, cov_chunk)`` over row chunks in eval mode under no_grad.

    ``module`` is put in eval mode (default: ``fn`` itself or the module ``fn`` is a method
    of) and restored afterwards. X/cov may be device tensors or host arrays (then moved per
    chunk to ``device``, default the module's device). Returns numpy float32, or a tuple of
    arrays when ``fn`` returns a tuple.
    """
    module = module or _owner_module(fn)
    if device is None:
        params = list(module.parameters()) if module is not None else []
        device = params[0].device if params else torch.device("cpu")
    n = X.shape[0]
    outs: list = []
    ctx = eval_mode(module) if module is not None else contextlib.nullcontext()
    with ctx, torch.no_grad():
        for start in range(0, n, batch_size):
            xb = to_device_tensor(X[start:start + batch_size], device)
            cb = None if cov is None else to_device_tensor(cov[start:start + batch_size], device)
            out = fn(xb, cb)
            outs.append(tuple(o.float().cpu() for o in out) if isinstance(out, tuple) else out.float().cpu())
    if outs and isinstance(outs[0], tuple):
        return tuple(torch.cat(parts).numpy() for parts in zip(*outs))
    return torch.cat(outs).numpy()
