"""Stage 2b: parameters that cannot change any output at all.

Two ways a parameter has no effect: no path from it to an output, or every path carries it as
an additive term that something downstream removes exactly:

* a mean-subtracting normaliser removes a term constant along the axes it averages over (a
  conv bias right before BatchNorm, a BN bias reaching the next BN through a 1x1 conv);
* a softmax removes a term constant along its axis, and attention a term of the keys constant
  across key positions (the key bias of every BERT-style attention, talking-heads biases).

For each node we keep ``deps`` (parameters it depends on) and ``offsets``: parameters whose
whole contribution to the node is an additive term constant along the given axes.  Invariant:
node = f(everything but p) + h_p with h_p constant along offsets[p].
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import Any, Mapping

from torch import fx

from . import axes as ax
from . import optable
from .graph import ModelGraph
from .modules import ModuleRule, Tensor
from .program import Program

_PASS_THROUGH = {"clone", "contiguous", "alias", "detach", "lift_fresh_copy", "dropout",
                 "feature_dropout", "alpha_dropout", "Dropout", "Dropout1d", "Dropout2d",
                 "Dropout3d", "Identity", "to", "_to_copy", "float", "double", "half",
                 "bfloat16", "positive", "neg", "slice", "narrow", "type_as"}
_RESHAPE = {"view", "reshape", "_unsafe_view", "_reshape_alias", "view_copy", "flatten",
            "unflatten", "squeeze", "unsqueeze", "view_as", "reshape_as", "squeeze_copy",
            "unsqueeze_copy", "Flatten", "Unflatten"}
_CONV = {"conv1d", "conv2d", "conv3d", "convolution", "_convolution", "Conv"}
_SOFTMAX = {"softmax", "log_softmax", "_softmax", "_log_softmax", "_safe_softmax",
            "Softmax", "LogSoftmax"}
_NORMS = {"layer_norm", "native_layer_norm", "LayerNorm", "group_norm", "native_group_norm",
          "GroupNorm", "batch_norm", "InstanceNorm", "BatchNorm", "SyncBatchNorm",
          "_native_batch_norm_legit", "_native_batch_norm_legit_functional",
          "native_batch_norm", "instance_norm"}
_ATTENTION = {"scaled_dot_product_attention", "_scaled_dot_product_flash_attention_for_cpu",
              "_scaled_dot_product_attention_math", "_scaled_dot_product_efficient_attention",
              "_scaled_dot_product_flash_attention"}
_MASK_FILL = -1e30  # filling with this or less keeps a row's softmax shift-invariant


@dataclass(frozen=True)
class Info:
    deps: frozenset[str] = frozenset()
    offsets: Mapping[str, frozenset[int]] = field(default_factory=dict)


@dataclass(frozen=True)
class TupleInfo:
    first: Info  # the main output (normalised, attended)
    rest: Info  # statistics: depend on everything the input does


@dataclass(frozen=True)
class Influence:
    no_effect: frozenset[str]
    absorbed_at: Mapping[str, str]  # parameter -> node that removes it
    # (add/sub node, operand) whose parameter-free summand is removed before every output:
    # the model computes the same function with it at 0, so it pins no degree
    dead_summands: frozenset[tuple[str, str]] = frozenset()


def analyse(program: Program, graph: ModelGraph, params: tuple[str, ...]) -> Influence:
    walker = _Walker(program)
    for node in program.gm.graph.nodes:
        if node.name in graph.relevant and node.op != "output":
            walker.visit(node)
            for alias in graph.mutations.get(node.name, ()):
                # later readers of the mutated storage see what the in-place op wrote
                walker.info[alias] = Info(_deps(walker.info.get(alias))
                                          | _deps(walker.info[node.name]))
    reaching: set[str] = set()
    for name in graph.outputs:
        reaching |= _deps(walker.info.get(name))
    no_effect = frozenset(p for p in params if p not in reaching)
    absorbed = {p: n for p, n in walker.absorbed.items() if p in no_effect}
    dead = frozenset(site for pseudo, site in walker.summands.items() if pseudo not in reaching)
    return Influence(no_effect, absorbed, dead)


def _deps(info: Any) -> frozenset[str]:
    if isinstance(info, TupleInfo):
        return info.first.deps | info.rest.deps
    return info.deps if isinstance(info, Info) else frozenset()


def _only_in(p: str, where: Info, others: list[Info]) -> bool:
    """p may stay an offset only if nothing else the op combines depends on it."""
    return all(p not in o.deps for o in others)


class _Walker:
    def __init__(self, program: Program):
        self.program = program
        self.info: dict[str, Any] = {}
        self.absorbed: dict[str, str] = {}
        self.summands: dict[str, tuple[str, str]] = {}  # pseudo-parameter -> (node, operand)

    def shape(self, value: Any) -> tuple[int, ...] | None:
        name = value.name if isinstance(value, fx.Node) else value
        meta = self.program.shapes.get(name)
        if isinstance(meta, tuple) and len(meta) == 2 and isinstance(meta[0], tuple):
            return meta[0]
        return None

    def visit(self, node: fx.Node) -> None:
        prog = self.program
        if node.name in prog.params:
            p = prog.params[node.name]
            shape = self.shape(node)
            offsets = {p: frozenset(i for i, s in enumerate(shape) if s == 1)} if shape else {}
            self.info[node.name] = Info(frozenset({p}), offsets)
            return
        if node.op in ("placeholder", "get_attr"):
            self.info[node.name] = Info()
            return
        if node.op == "call_function" and node.target is operator.getitem:
            src = self.info.get(node.args[0].name) if isinstance(node.args[0], fx.Node) else None
            if isinstance(src, TupleInfo):
                self.info[node.name] = src.first if node.args[1] == 0 else src.rest
            else:
                self.info[node.name] = Info(_deps(src))
            return
        module = prog.gm.get_submodule(node.target) if node.op == "call_module" else None
        entry = optable.entry_for(node, module)
        everything = self._all_deps(node)
        if entry is None:
            self.info[node.name] = Info(everything)
            return
        args = self._bound(node, entry, module)
        try:
            self.info[node.name] = self._rule(node, entry.name, args, everything)
        except (TypeError, ValueError, IndexError, KeyError, ZeroDivisionError):
            self.info[node.name] = Info(everything)  # an argument form we do not read

    def _all_deps(self, node: fx.Node) -> frozenset[str]:
        deps: set[str] = set()
        for n in node.all_input_nodes:
            deps |= _deps(self.info.get(n.name))
        leaf = self.program.leaves.get(node.name)
        if leaf is not None:
            deps |= set(leaf.params.values())
        return frozenset(deps)

    def _bound(self, node: fx.Node, entry, module) -> dict[str, Any]:
        if isinstance(entry, ModuleRule):
            bound = entry.adapter(module, tuple(node.args), dict(node.kwargs))
            leaf = self.program.leaves.get(node.name)
            out = {}
            for k, v in bound.items():
                if isinstance(v, Tensor):
                    canon = leaf.params.get(v.name) if leaf else None
                    v = ("param", canon) if canon else None
                out[k] = v
            if hasattr(module, "padding"):
                out["padding"] = module.padding
            if hasattr(module, "dim") and entry.name in _SOFTMAX:
                out["dim"] = module.dim
            return out
        return optable.bind(entry, tuple(node.args), dict(node.kwargs))[0]

    def _of(self, value: Any) -> Info:
        if isinstance(value, fx.Node):
            info = self.info.get(value.name)
            return info if isinstance(info, Info) else Info(_deps(info))
        if isinstance(value, tuple) and value and value[0] == "param":
            return Info(frozenset({value[1]}))
        return Info()

    # -- the rules ------------------------------------------------------------------------
    def _rule(self, node: fx.Node, op: str, args: dict, everything: frozenset[str]) -> Any:
        x = args.get("input")
        xinfo = self._of(x)
        if op in _PASS_THROUGH or (op in ("mul", "div") and _is_number(args.get("other"))):
            return Info(everything, dict(xinfo.offsets))
        if op in ("add", "sub"):
            if node.op == "call_function" and _mean_of_same(node, x, args.get("other")):
                return self._subtract_mean(node, x, args.get("other"), everything)
            return self._add(node, args, everything)
        if op == "mul":
            return self._product(node, x, args.get("other"), everything)
        if op in _RESHAPE:
            return self._mapped(xinfo, everything,
                                lambda a: ax.reshape(a, self.shape(x), self.shape(node)))
        if op in ("permute", "movedim_") or op == "permute_copy":
            dims = _dims(node)
            return self._mapped(xinfo, everything,
                                lambda a: ax.permute(a, dims, len(self.shape(node))))
        if op in ("transpose", "swapaxes", "transpose_copy", "t"):
            d0, d1 = (0, 1) if op == "t" else _two_dims(node)
            return self._mapped(xinfo, everything,
                                lambda a: ax.transpose(a, d0, d1, len(self.shape(node))))
        if op in ("expand", "expand_as", "expand_copy"):
            return self._mapped(xinfo, everything,
                                lambda a: ax.broadcast(a, self.shape(x), self.shape(node)))
        if op == "select":
            dim = args.get("dim", 0)
            return self._mapped(xinfo, everything,
                                lambda a: ax.remove(a, dim, len(self.shape(x))))
        if op == "masked_fill" and _is_number(args.get("value")) and args["value"] <= _MASK_FILL:
            # masked logits stay at -inf: a softmax over the row still ignores the shift
            return Info(everything, dict(xinfo.offsets))
        if op in ("linear", "Linear", "addmm") or op in _CONV:
            return self._linear(node, op, args, everything)
        if op in ("matmul", "bmm", "mm"):
            return self._matmul(node, x, args.get("other", args.get("mat2")), everything)
        if op in _SOFTMAX:
            return self._softmax(node, x, args, everything)
        if op in _ATTENTION:
            return self._attention(node, args, everything)
        if op in _NORMS:
            return self._norm(node, op, args, everything)
        return Info(everything)

    def _mapped(self, xinfo: Info, everything, fn) -> Info:
        return Info(everything, {p: fn(a) for p, a in xinfo.offsets.items()})

    def _add(self, node, args, everything) -> Info:
        """A sum keeps the additive terms of both sides.  A parameter-free summand (a constant,
        a buffer, the input) is followed as a term of its own, a pseudo-parameter: if it never
        reaches an output, the model is the same function with it at zero."""
        out = self.shape(node)
        if out is None:
            return Info(everything)
        pieces = []
        for role in ("input", "other"):
            operand = args.get(role)
            if isinstance(operand, fx.Node):
                info, shape = self._of(operand), self.shape(operand)
                if shape is None:
                    return Info(everything)
            elif _is_number(operand) and operand != 0:
                info, shape = Info(), ()
            else:
                continue
            if not info.deps:
                pseudo = f"@{node.name}:{role}"
                self.summands[pseudo] = (node.name, role)
                # a tensor is constant only along its size-1 axes (broadcast adds the rest)
                flat = frozenset(i for i, n in enumerate(shape) if n == 1)
                info = Info(frozenset({pseudo}), {pseudo: flat})
            pieces.append((info, {p: ax.broadcast(v, shape, out) for p, v in info.offsets.items()}))
        offsets: dict[str, frozenset[int]] = {}
        blocked: set[str] = set()
        for info, _ in pieces:
            blocked |= info.deps - set(info.offsets)
        for _, aligned in pieces:
            for p, v in aligned.items():
                offsets[p] = offsets[p] & v if p in offsets else v
        for p in blocked:
            offsets.pop(p, None)
        extra = frozenset().union(*(info.deps for info, _ in pieces)) if pieces else frozenset()
        return Info(everything | extra, offsets)

    def _product(self, node, a, b, everything) -> Info:
        """(f + h)·y = f·y + h·y: the term stays additive, constant where it was and where y
        does not vary (a per-channel gain keeps it constant along the batch)."""
        out = self.shape(node)
        if out is None:
            return Info(everything)
        offsets: dict[str, frozenset[int]] = {}
        for u, v in ((a, b), (b, a)):
            if not isinstance(u, fx.Node):
                continue
            ushape = self.shape(u)
            vshape = self.shape(v) if isinstance(v, fx.Node) else ()
            if ushape is None or vshape is None:
                return Info(everything)
            flat = ax.broadcast(frozenset(), vshape, out)  # axes along which v does not vary
            uinfo, vinfo = self._of(u), self._of(v)
            for p, a_ in uinfo.offsets.items():
                if p not in vinfo.deps:
                    offsets[p] = ax.broadcast(a_, ushape, out) & flat
        return Info(everything, offsets)

    def _linear(self, node, op, args, everything) -> Info:
        """W(x + h) + b = Wx + Wh + b: Wh keeps x's constant axes except the one contracted
        (and, for a convolution, the spatial ones when padding makes borders differ); the bias
        is a new term constant along everything but the output channel."""
        rank = len(self.shape(node) or ())
        if not rank:
            return Info(everything)
        x = args.get("mat1") if op == "addmm" else args.get("input")
        xinfo = self._of(x)
        weight = self._of(args.get("mat2") if op == "addmm" else args.get("weight"))
        bias_arg = args.get("input") if op == "addmm" else args.get("bias")
        bias = self._of(bias_arg)
        offsets: dict[str, frozenset[int]] = {}
        if op in _CONV:
            keep = frozenset(range(rank)) - {1}
            if args.get("transposed") or not _no_padding(args.get("padding", 0)):
                keep = frozenset({0})  # zero borders (or a transposed conv) break spatial constancy
            channel = 1
        else:
            keep, channel = frozenset(range(rank - 1)), rank - 1
        pure_bias = None
        if len(bias.deps) == 1 and _pure_param(bias_arg, self.program):
            (pure_bias,) = bias.deps
        for p, a in xinfo.offsets.items():
            if p in weight.deps or (p in bias.deps and p != pure_bias):
                continue  # multiplied by itself, or inside the bias in some other way
            offsets[p] = a & keep
        own = frozenset(range(rank)) - {channel}
        if pure_bias is not None and pure_bias not in weight.deps:
            if pure_bias in offsets:  # a layer applied twice: W·b through x, plus b itself
                offsets[pure_bias] &= own
            elif pure_bias not in xinfo.deps:
                offsets[pure_bias] = own
        return Info(everything, offsets)

    def _matmul(self, node, x, y, everything) -> Info:
        """(x + h) @ y: h @ y keeps x's row axis; x @ (y + h): keeps y's column axis; batch
        axes only where the other side broadcasts."""
        out = self.shape(node)
        xs, ys = self.shape(x), self.shape(y)
        if not (out and xs and ys) or len(xs) < 2 or len(ys) < 2:
            return Info(everything)
        xinfo, yinfo = self._of(x), self._of(y)
        offsets: dict[str, frozenset[int]] = {}
        r = len(out)
        for info, other, shape, oshape, own_axis in ((xinfo, yinfo, xs, ys, r - 2),
                                                    (yinfo, xinfo, ys, xs, r - 1)):
            flat_other = ax.broadcast(frozenset(), oshape[:-2], out[:-2])
            for p, a in info.offsets.items():
                if not _only_in(p, info, [other]):
                    continue
                aligned = ax.broadcast(a, shape, out)
                kept = {i for i in aligned if i < r - 2 and i in flat_other}
                if own_axis in aligned:
                    kept.add(own_axis)
                offsets[p] = frozenset(kept)
        return Info(everything, offsets)

    def _softmax(self, node, x, args, everything) -> Info:
        shape = self.shape(x)
        dim = args.get("dim")
        if shape is None or not isinstance(dim, int):
            return Info(everything)
        removed = self._absorb(node, self._of(x), frozenset({dim % len(shape)}))
        return Info(everything - removed)

    def _attention(self, node, args, everything) -> Any:
        """softmax(q kᵀ + mask) v: a term of the keys constant across key positions, or of
        the mask constant along its last axis, shifts every logit of a row alike."""
        q, k, v = (self._of(args.get(n)) for n in ("query", "key", "value"))
        mask = self._of(args.get("attn_mask"))
        removed: set[str] = set()
        kshape = self.shape(args.get("key"))
        if kshape is not None:
            for p in self._absorb(node, k, frozenset({len(kshape) - 2})):
                if _only_in(p, k, [q, v, mask]):
                    removed.add(p)
        mshape = self.shape(args.get("attn_mask")) if args.get("attn_mask") is not None else None
        if mshape:
            for p in self._absorb(node, mask, frozenset({len(mshape) - 1})):
                if _only_in(p, mask, [q, k, v]):
                    removed.add(p)
        for p in list(self.absorbed):
            if self.absorbed[p] == node.name and p not in removed:
                del self.absorbed[p]
        out = Info(everything - removed)
        if str(node.target).startswith("aten._scaled"):  # (output, logsumexp, …)
            return TupleInfo(out, Info(everything))
        return out

    def _subtract_mean(self, node, a, b, everything) -> Info:
        """``x - x.mean(dims, keepdim=True)`` removes offsets constant along ``dims``."""
        shape = self.shape(a)
        rank = len(shape) if shape else 0
        dims = b.kwargs.get("dim", b.args[1] if len(b.args) > 1 else None)
        dims = [dims] if isinstance(dims, int) else list(dims or [])
        reduced = frozenset(d % rank for d in dims) if rank else frozenset()
        return Info(everything - self._absorb(node, self._of(a), reduced))

    def _norm(self, node, op, args, everything) -> Any:
        x = args.get("input")
        shape = self.shape(x)
        if shape is None:
            return Info(everything)
        rank = len(shape)
        if op in ("layer_norm", "native_layer_norm", "LayerNorm"):
            k = len(tuple(args.get("normalized_shape") or ()))
            reduced = frozenset(range(rank - k, rank))
        elif op in ("group_norm", "native_group_norm", "GroupNorm"):
            groups = args.get("num_groups", args.get("group"))
            reduced = frozenset(range(2 if groups == shape[1] else 1, rank))
        elif op in ("InstanceNorm", "instance_norm"):
            if not args.get("use_input_stats", True):
                return Info(everything)
            reduced = frozenset(range(2, rank))
        else:
            if not args.get("training", True):
                return Info(everything)
            reduced = frozenset(range(rank)) - {1}
        offsets = {}
        bias_arg, weight = args.get("bias"), self._of(args.get("weight"))
        bias = self._of(bias_arg)
        if len(bias.deps) == 1 and _pure_param(bias_arg, self.program):
            (b,) = bias.deps  # γ·x̂ + β: β is a term constant along all but its own axes
            if b not in self._of(x).deps and b not in weight.deps:
                own = (1,) if op not in ("layer_norm", "native_layer_norm", "LayerNorm") \
                    else tuple(range(rank - len(tuple(args.get("normalized_shape") or ())), rank))
                offsets[b] = frozenset(range(rank)) - set(own)
        out = Info(everything - self._absorb(node, self._of(x), reduced), offsets)
        if op.startswith("native") or op.startswith("_native"):
            return TupleInfo(out, Info(everything))
        return out

    def _absorb(self, node, xinfo: Info, reduced: frozenset[int]) -> frozenset[str]:
        gone = frozenset(p for p, a in xinfo.offsets.items() if reduced and reduced <= a)
        for p in gone:
            self.absorbed.setdefault(p, node.name)
        return gone


def _dims(node: fx.Node) -> list[int]:
    rest = list(node.args[1:])
    if len(rest) == 1 and isinstance(rest[0], (list, tuple)):
        return list(rest[0])
    return list(rest or node.kwargs.get("dims", ()))


def _two_dims(node: fx.Node) -> tuple[int, int]:
    rest = list(node.args[1:3])
    return int(rest[0]), int(rest[1])


def _no_padding(padding) -> bool:
    if padding == "valid":
        return True
    if isinstance(padding, int):
        return padding == 0
    return isinstance(padding, (list, tuple)) and all(p == 0 for p in padding)


def _pure_param(value, program: Program) -> bool:
    if isinstance(value, tuple) and value and value[0] == "param":
        return True
    return isinstance(value, fx.Node) and value.name in program.params


def _mean_of_same(node: fx.Node, a, b) -> bool:
    if not (isinstance(a, fx.Node) and isinstance(b, fx.Node)):
        return False
    is_sub = node.target is operator.sub or str(node.target).startswith("aten.sub")
    mean_like = b.op in ("call_method", "call_function") and (
        b.target == "mean" or str(b.target).startswith("aten.mean")
        or getattr(b.target, "__name__", "") == "mean")
    keep = b.kwargs.get("keepdim", b.args[2] if len(b.args) > 2 else False)
    return is_sub and mean_like and bool(b.args) and b.args[0] is a and bool(keep)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)
