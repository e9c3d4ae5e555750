"""FlopCounter: closed-form convolution and matmul counts, forward and backward under autograd.grad."""

from __future__ import annotations

import torch

from psld.models.flops import FlopCounter


def test_conv_forward_and_input_backward():
    conv = torch.nn.Conv2d(3, 5, 3, padding=1).requires_grad_(False)
    x = torch.randn(2, 3, 8, 8, requires_grad=True)
    fwd = 2 * 3 * 5 * 9 * 8 * 8 * 2  # 2 FLOPs per multiply-add, per output pixel, per sample
    with FlopCounter() as c:
        y = conv(x)
    assert c.total == fwd
    with FlopCounter() as c:
        torch.autograd.grad(y.square().sum(), x)  # input gradient only: one more conv's worth
    assert c.total == fwd
    conv.requires_grad_(True)
    with FlopCounter() as c:
        y = conv(x)
        torch.autograd.grad(y.sum(), [x, conv.weight])  # input and weight gradients
    assert c.total == 3 * fwd


def test_matmul_count():
    a, b = torch.randn(4, 6), torch.randn(6, 7)
    with FlopCounter() as c:
        a @ b
        torch.relu(a)  # not counted
    assert c.total == 2 * 4 * 6 * 7 and set(c.by_op) == {"mm"}
