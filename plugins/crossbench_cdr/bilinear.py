"""A bilinear layer whose backward pass on the CPU never holds a ``[rows, out, in1, in2]`` buffer.

torch computes the gradient of ``nn.Bilinear``'s first input as the product of the output
gradient with the weight, expanded over every row of the batch (``[rows, out, in1, in2]``),
followed by one batched matrix product with the second input. For the critics and
discriminators of the CDR models (512 rows, 128 by 128; or 256 rows, 256 by 256) that buffer is
33 to 67 MB per call: allocated, page-faulted, filled and read once, which on a CPU costs more
than the rest of a training step.

:func:`bilinear` returns what ``layer(x1, x2)`` returns, and on the CPU computes the gradients
with the very kernels torch's own backward calls (``_trilinear`` with the same arguments), the
costly one in blocks of rows whose products fill about :data:`BLOCK_FLOATS` floats: each row's
products and sums are the same whatever the block (the batched product treats rows
independently), so every gradient is bit-for-bit torch's. On other devices it is ``layer(x1, x2)``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

#: floats of ``grad * weight`` products per block of rows of the first input's gradient (1 MiB: stays in the cache)
BLOCK_FLOATS = 1 << 18


class _RowBlockedBilinear(torch.autograd.Function):
    """``F.bilinear`` on 2-D inputs; the backward pass is torch's, the first input's gradient in row blocks."""

    @staticmethod
    def forward(ctx: Any, x1: torch.Tensor, x2: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x1, x2, weight)
        ctx.bias_shape = bias.shape
        return F.bilinear(x1, x2, weight, bias)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x1, x2, weight = ctx.saved_tensors
        need = ctx.needs_input_grad
        g1 = g2 = gw = gb = None
        if need[0]:  # as torch: _trilinear(grad, weight, x2, sumdim, expand2, expand3, expand1), by row blocks
            rows = max(1, BLOCK_FLOATS // weight.numel())
            blocks = [torch._trilinear(grad[s : s + rows], weight, x2[s : s + rows], [2, 3], [0], [1, 2], [1, 3])
                      for s in range(0, len(grad), rows)]
            g1 = torch.cat(blocks) if blocks else torch.zeros_like(x1)
        if need[1]:
            g2 = torch._trilinear(x1, weight, grad, [1, 3], [0], [2, 3], [1, 2])
        if need[2]:
            gw = torch._trilinear(x1, grad, x2, [1, 3], [2, 3], [1, 2], [0])
        if need[3]:
            gb = grad.sum_to_size(ctx.bias_shape)
        return g1, g2, gw, gb


def bilinear(layer: nn.Bilinear, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
    """``layer(x1, x2)`` for ``[rows, in1]`` and ``[rows, in2]`` inputs, with the backward pass described above on the CPU."""
    if x1.device.type != "cpu" or x1.dim() != 2 or layer.bias is None or torch.is_autocast_enabled("cpu"):
        return layer(x1, x2)
    out: torch.Tensor = _RowBlockedBilinear.apply(x1, x2, layer.weight, layer.bias)
    return out


__all__ = ["BLOCK_FLOATS", "bilinear"]
