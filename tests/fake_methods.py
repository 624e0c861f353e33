"""Methods that misbehave on purpose, for the runner's fault-handling tests."""

import numpy as np

from methods.base import IntegrationResult, TrainingDivergedError


def integrate(adata, *, batch_key, label_key, params, seed, device):
    mode = params["mode"]
    if mode == "raise":
        raise RuntimeError("deliberate failure in fake method")
    if mode == "nan":
        raise TrainingDivergedError("non-finite loss 'recon' at epoch 3")
    if mode == "nan_output":
        return IntegrationResult(embedding=np.full((adata.n_obs, 2), np.nan))
    if mode == "memory":
        blocks = []
        while True:  # grows until the max_mem_mb limit raises MemoryError
            blocks.append(np.empty(50_000_000, dtype=np.float64))  # address space counts
    if mode == "allocate":  # params["mb"] of address space, untouched (no real memory used)
        block = np.empty(int(params["mb"]) * 2**20, dtype=np.uint8)
        del block
    if mode == "sleep":
        import time

        time.sleep(float(params["seconds"]))
    if mode == "kill":
        import os
        import signal

        os.kill(os.getpid(), signal.SIGKILL)
    rng = np.random.default_rng(seed)
    if mode == "untrained":  # no training loop (like PCA or Harmony)
        return IntegrationResult(embedding=rng.normal(size=(adata.n_obs, 3)))
    labels = adata.obs[label_key].astype(str).to_numpy()
    return IntegrationResult(embedding=rng.normal(size=(adata.n_obs, 3)), predicted_labels=labels,
                             loss_history={"loss": [3.0, 2.0, 1.0]}, epochs=3)
