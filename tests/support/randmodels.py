"""Random models for property-based differential testing.

A model is a :class:`Spec`: a straight-line program of :class:`Op` over values of shape
``(BATCH, LENGTH, width)`` (channels last, like tokens), where every op reads earlier values, so
the program is a random DAG.  ``build(spec)`` turns it into an ``nn.Module`` whose forward
interprets the ops (plain Python over a fixed list: ``symbolic_trace`` unrolls it).

Ops cover what the analysis must get right: Linear/Conv layers, every supported norm (BatchNorm
in train semantics), homogeneous, non-homogeneous and saturating activations, residual adds
before and after norms, concatenation, a module applied twice, tied weights (also transposed),
constant offsets and parameters used directly.  Specs print as valid Python, so a failing
example pastes straight into a regression test.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from hypothesis import strategies as st
from torch import nn
from torch.nn.utils import parametrizations

BATCH, LENGTH = 4, 3  # BatchNorm averages over 12 values per channel, InstanceNorm over 3
WIDTHS = (3, 4, 5)
MAX_WIDTH = 8  # concatenations stop growing here

NORMS = ("layer", "batch", "group", "instance", "rms", "hand_rms", "normalize")
HOMOGENEOUS = ("relu", "leaky_relu", "max_pool", "avg_pool")
NONHOMOGENEOUS = ("gelu", "tanh", "sigmoid", "softmax")
SATURATING = ("relu6", "hardtanh", "clamp")
ACTIVATIONS = HOMOGENEOUS + NONHOMOGENEOUS + SATURATING


@dataclass(frozen=True)
class Op:
    """``kind`` applied to the values at ``inputs``; ``arg`` is the kind's one setting:
    output width (linear, conv, weight_norm, tied_t), norm or activation name, the earlier op
    whose module or weight is reused (shared, tied, tied_t).  ``bias`` is the layer's bias, or
    for a norm whether it has an affine transform."""

    kind: str
    inputs: tuple[int, ...]
    arg: object = None
    bias: bool = True


@dataclass(frozen=True)
class Spec:
    width: int  # of the input
    ops: tuple[Op, ...]
    outputs: tuple[int, ...]  # value indices; value 0 is the input, value i+1 is ops[i]
    seed: int = 0


# --- building --------------------------------------------------------------------------------


class HandRMSNorm(nn.Module):
    """RMSNorm written out by hand, as many codebases do; ``eps`` is an attribute so that the
    oracle's eps -> 0 limit reaches it."""

    def __init__(self, width: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(width))
        self.eps = eps

    def forward(self, x):
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))


class Normalize(nn.Module):
    def forward(self, x):
        return F.normalize(x, dim=-1)


class Gain(nn.Module):
    """A parameter used directly: ``x * gamma``."""

    def __init__(self, width: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(width))

    def forward(self, x):
        return x * self.gamma


class Position(nn.Module):
    """A parameter used directly: ``x + pos`` (a learned position table)."""

    def __init__(self, width: int):
        super().__init__()
        self.pos = nn.Parameter(torch.randn(LENGTH, width) * 0.1)

    def forward(self, x):
        return x + self.pos


class ChannelsFirst(nn.Module):
    """Runs a (batch, channels, length) layer on our (batch, length, channels) values."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(x.transpose(1, 2)).transpose(1, 2)


def _norm(kind: str, width: int, affine: bool) -> nn.Module:
    if kind == "layer":
        return nn.LayerNorm(width, elementwise_affine=affine)
    if kind == "batch":
        return ChannelsFirst(nn.BatchNorm1d(width, affine=affine))
    if kind == "group":
        groups = max(g for g in (1, 2, 3) if width % g == 0 and g < width) if width > 1 else 1
        return ChannelsFirst(nn.GroupNorm(groups, width, affine=affine))
    if kind == "instance":
        return ChannelsFirst(nn.InstanceNorm1d(width, affine=affine))
    if kind == "rms":
        return nn.RMSNorm(width, elementwise_affine=affine)
    if kind == "hand_rms":
        return HandRMSNorm(width)
    if kind == "normalize":
        return Normalize()
    raise ValueError(kind)


def _activation(kind: str, x: torch.Tensor) -> torch.Tensor:
    if kind == "relu":
        return torch.relu(x)
    if kind == "leaky_relu":
        return F.leaky_relu(x, 0.1)
    if kind == "max_pool":  # over the length axis, keeping it
        return F.max_pool1d(x.transpose(1, 2), 3, 1, 1).transpose(1, 2)
    if kind == "avg_pool":
        return F.avg_pool1d(x.transpose(1, 2), 3, 1, 1).transpose(1, 2)
    if kind == "gelu":
        return F.gelu(x)
    if kind == "tanh":
        return torch.tanh(x)
    if kind == "sigmoid":
        return torch.sigmoid(x)
    if kind == "softmax":
        return torch.softmax(x, dim=-1)
    if kind == "relu6":
        return F.relu6(x)
    if kind == "hardtanh":
        return F.hardtanh(x)
    if kind == "clamp":
        return torch.clamp(x, -0.5, 1.5)
    raise ValueError(kind)


class RandomNet(nn.Module):
    def __init__(self, spec: Spec):
        super().__init__()
        self.spec = spec
        self.layers = nn.ModuleDict()
        widths = [spec.width]
        for i, op in enumerate(spec.ops):
            w_in = widths[op.inputs[0]]
            key = f"op{i}"
            if op.kind == "linear":
                self.layers[key] = nn.Linear(w_in, op.arg, bias=op.bias)
            elif op.kind == "weight_norm":
                linear = nn.Linear(w_in, op.arg, bias=op.bias)
                self.layers[key] = parametrizations.weight_norm(linear)
            elif op.kind == "conv":
                conv = nn.Conv1d(w_in, op.arg, 3, padding=1, bias=op.bias)
                self.layers[key] = ChannelsFirst(conv)
            elif op.kind == "tied":  # a new Linear that shares op.arg's weight, own bias
                source = self.layers[f"op{op.arg}"]
                layer = nn.Linear(w_in, source.out_features, bias=op.bias)
                layer.weight = source.weight
                self.layers[key] = layer
            elif op.kind == "norm":
                self.layers[key] = _norm(op.arg, w_in, op.bias)
            elif op.kind == "gain":
                self.layers[key] = Gain(w_in)
            elif op.kind == "pos":
                self.layers[key] = Position(w_in)
            widths.append(width_after(op, widths, spec.ops))

    def forward(self, x):
        values = [x]
        for i, op in enumerate(self.spec.ops):
            a = values[op.inputs[0]]
            if op.kind in ("linear", "weight_norm", "conv", "tied", "norm", "gain", "pos"):
                y = self.layers[f"op{i}"](a)
            elif op.kind == "shared":  # an earlier layer applied again
                y = self.layers[f"op{op.arg}"](a)
            elif op.kind == "tied_t":  # x @ W for an earlier Linear's W: a transposed tie
                y = a @ self.layers[f"op{op.arg}"].weight
            elif op.kind == "act":
                y = _activation(op.arg, a)
            elif op.kind == "add":
                y = a + values[op.inputs[1]]
            elif op.kind == "cat":
                y = torch.cat([a, values[op.inputs[1]]], dim=-1)
            elif op.kind == "offset":
                y = a + 1.0
            else:
                raise ValueError(op.kind)
            values.append(y)
        outs = tuple(values[j] for j in self.spec.outputs)
        return outs[0] if len(outs) == 1 else outs


def width_after(op: Op, widths: list[int], ops) -> int:
    if op.kind in ("linear", "weight_norm", "conv"):
        return op.arg
    if op.kind in ("shared", "tied"):
        return _out_width(op.arg, widths)
    if op.kind == "tied_t":
        return widths[ops[op.arg].inputs[0]]  # the source Linear's input width
    if op.kind == "cat":
        return widths[op.inputs[0]] + widths[op.inputs[1]]
    return widths[op.inputs[0]]


def _out_width(op_index: int, widths: list[int]) -> int:
    return widths[op_index + 1]


def build(spec: Spec) -> tuple[nn.Module, torch.Tensor]:
    """The model (seeded initialisation, global RNG untouched) and an example input."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec.seed)
        model = RandomNet(spec)
    gen = torch.Generator().manual_seed(spec.seed)
    return model, torch.randn(BATCH, LENGTH, spec.width, generator=gen)


# --- the strategy ----------------------------------------------------------------------------


@st.composite
def specs(draw, max_ops: int = 12) -> Spec:
    width = draw(st.sampled_from(WIDTHS))
    widths = [width]
    ops: list[Op] = []
    linears: list[int] = []  # op indices of plain Linear layers (shareable, tieable)
    for _ in range(draw(st.integers(2, max_ops))):
        op = _draw_op(draw, widths, ops, linears)
        if op.kind == "linear":
            linears.append(len(ops))
        ops.append(op)
        widths.append(width_after(op, widths, ops))
    last = len(ops)
    extra = draw(st.lists(st.integers(1, last), max_size=1))
    outputs = (last, *(j for j in extra if j != last))
    return Spec(width, tuple(ops), outputs, draw(st.integers(0, 2**16)))


def _draw_op(draw, widths: list[int], ops: list[Op], linears: list[int]) -> Op:
    n = len(widths)
    # recent values are likelier inputs, so chains get deep instead of all reading the input
    pick = st.integers(0, n - 1).map(lambda i: max(i, n - 1 - i))
    src = draw(pick)
    w = widths[src]
    choices = ["linear", "linear", "conv", "weight_norm", "norm", "norm", "act", "act", "offset",
               "gain", "pos"]
    same_width = [j for j in range(n) if widths[j] == w and j != src]
    if same_width:
        choices += ["add", "add"]
    if any(widths[j] + w <= MAX_WIDTH for j in range(n)):
        choices.append("cat")
    shareable = [i for i in linears if widths[ops[i].inputs[0]] == w]
    if shareable:
        choices += ["shared", "tied"]
    transposable = [i for i in linears if _out_width(i, widths) == w]
    if transposable:
        choices.append("tied_t")
    kind = draw(st.sampled_from(choices))
    bias = draw(st.booleans())
    if kind in ("linear", "conv", "weight_norm"):
        return Op(kind, (src,), draw(st.sampled_from(WIDTHS)), bias)
    if kind == "norm":
        return Op(kind, (src,), draw(st.sampled_from(NORMS)), bias)
    if kind == "act":
        return Op(kind, (src,), draw(st.sampled_from(ACTIVATIONS)))
    if kind == "add":
        return Op(kind, (src, draw(st.sampled_from(same_width))))
    if kind == "cat":
        return Op(kind, (src, draw(st.sampled_from([j for j in range(n)
                                                      if widths[j] + w <= MAX_WIDTH]))))
    if kind in ("shared", "tied"):
        return Op(kind, (src,), draw(st.sampled_from(shareable)), bias)
    if kind == "tied_t":
        return Op(kind, (src,), draw(st.sampled_from(transposable)))
    return Op(kind, (src,))
