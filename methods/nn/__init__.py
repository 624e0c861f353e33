"""Shared PyTorch core for the deep models: layers, likelihoods, VampPrior, training helpers.

Modules: ``layers`` (MLP with covariate injection, a Linear on oneDNN's fp32 kernels on CPU,
gradient reversal), ``likelihoods`` (Gaussian / NB / ZINB NLL, KL terms), ``vamp_prior``
(VampPrior), ``training`` (seeding, device, precision (fp32 / bf16 autocast), resident tensors,
minibatch sampling, loss history, NaN guard, progress, eval-mode encoding). Import the
submodules directly; this package imports nothing heavy itself.
"""
