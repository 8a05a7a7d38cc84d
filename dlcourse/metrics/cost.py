"""What a network call costs: FLOPs, and the activation memory a training step keeps for its backward pass.

Both are counted, not timed, so they mean the same on every machine: FLOPs with PyTorch's
``FlopCounterMode`` (matrix multiplies and convolutions, 2 FLOPs per multiply-add); activation memory as the
bytes of the tensors autograd saves during the forward pass (``torch.autograd.graph.saved_tensors_hooks``),
each storage counted once. That memory, not the weights, is what grows with the image size and the batch.

Taught in notebooks/05_latent_diffusion.ipynb, section "Pixel vs latent, measured".
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from torch.utils.flop_counter import FlopCounterMode

__all__ = ["activation_bytes", "forward_flops"]


def forward_flops(call: Callable[[], object]) -> int:
    """FLOPs of ``call()`` (e.g. ``lambda: model(x_t, t)``), run once under no_grad."""
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        call()
    return counter.get_total_flops()


def activation_bytes(loss: Callable[[], Tensor]) -> int:
    """Bytes of the tensors autograd saves for the backward pass while ``loss()`` runs (no backward is run).

    Parameters saved by a layer are included (they exist anyway, but are few next to the activations at
    image sizes); a storage saved twice counts once.
    """
    storages: dict[tuple[int, str], int] = {}

    def pack(tensor: Tensor) -> Tensor:
        storage = tensor.untyped_storage()
        storages[(storage.data_ptr(), str(tensor.device))] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        loss()
    return sum(storages.values())
