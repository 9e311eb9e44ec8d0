"""Stage 8: per-parameter verdicts from the static claims and their confirmation.

ineffective — a confirmed claim covers it: a scale symmetry with ``s_p > 0`` or no effect at all;
effective   — the constraints pin its scale (a rescaling of mixed sign may still exist);
unknown     — the analysis could not see (an unknown op on the way, a claim that failed its
              numerical check, or nothing measurable to check against);
frozen      — training does not update it (``engine.training``): a constant, about which
              nothing is claimed.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Mapping, Sequence

import numpy as np
from scipy import sparse

from ...ops.degree import Deg
from ...report import (EFFECTIVE, FAILED, FROZEN, INEFFECTIVE, SKIPPED, UNKNOWN, Check, Confirmation,
                      Group, Member, ParameterReport, Rescaling)
from .claims import Claims
from .degrees import Degrees
from .graph import describe
from .influence import Influence
from .names import short
from ..tracing.program import Program


@dataclass(frozen=True)
class Verdicts:
    parameters: Mapping[str, ParameterReport]
    groups: tuple[Group, ...]
    rescalings: tuple[Rescaling, ...]


def decide(claims: Claims, confirmation: Confirmation) -> Verdicts:
    symmetries = claims.symmetries
    degrees = symmetries.degrees
    graph = degrees.influence.graph
    table = _DegreeTable(degrees)
    groups = tuple(_group(i, claim, _check(confirmation, i), table)
                   for i, claim in enumerate(claims.claims))
    rescalings = tuple(Rescaling(tuple(Member(k, v) for k, v in r.items()))
                       for r in symmetries.rescalings)
    reports = {name: _verdict(name, tensor, claims, groups, confirmation)
               for name, tensor in graph.program.root.model.named_parameters()}
    return Verdicts(reports, groups, rescalings)


def _check(confirmation: Confirmation, i: int) -> Check | None:
    return confirmation.checks[i] if i < len(confirmation.checks) else None


def _group(i: int, claim, check: Check | None, table: _DegreeTable) -> Group:
    if claim.kind == "no-effect":
        members = (Member(claim.redraw[0], Fraction(1)),)
        nodes: tuple[str, ...] = ()
    else:
        members = tuple(Member(k, v) for k, v in claim.group.exponents.items())
        nodes = table.normalising(claim.group.exponents)
    nan = float("nan")
    return Group(
        id=i, kind=claim.kind, members=members, confirmed=bool(check and check.confirmed),
        max_relative_change=check.max_relative_change if check else nan,
        exact_relative_change=check.exact_relative_change if check else nan,
        euler_residual=check.euler_residual if check else nan,
        eps_limited=bool(check and check.eps_limited), normalising_nodes=nodes,
        note=(check.note if check else "not confirmed numerically"))


def _verdict(name: str, tensor, claims: Claims, groups: Sequence[Group],
             confirmation: Confirmation) -> ParameterReport:
    # skipped: the static claims stand, marked; failed: nobody could check them
    unconfirmed = confirmation.outcome == SKIPPED
    cannot_measure = confirmation.reason if confirmation.outcome == FAILED else ""
    base = dict(name=name, shape=tuple(tensor.shape), requires_grad=tensor.requires_grad,
                module=name.rpartition(".")[0])
    why = (claims.symmetries.fixed or {}).get(name)
    if why:
        return ParameterReport(verdict=FROZEN, reason=f"held fixed in training ({why}): a "
                               "constant, never rescaled; its decay, if any, does nothing",
                               **base)
    mine = [g for g in groups if name in g.names]
    if cannot_measure and mine:  # a claim nobody could check; static "effective" stands
        return ParameterReport(verdict=UNKNOWN, reason=cannot_measure,
                               groups=tuple(g.id for g in mine), **base)
    holding = [g for g in mine if g.confirmed or unconfirmed]
    if holding:
        reason = _ineffective_reason(name, holding[0], claims.symmetries.degrees.influence)
        if unconfirmed:
            reason += " [not confirmed numerically]"
        return ParameterReport(verdict=INEFFECTIVE, reason=reason,
                               groups=tuple(x.id for x in holding), **base)
    if mine:
        notes = "; ".join(g.note for g in mine if g.note)
        return ParameterReport(verdict=UNKNOWN, groups=tuple(g.id for g in mine),
                               reason=f"the static claim failed its numerical check ({notes})",
                               **base)
    symmetries = claims.symmetries
    if name in symmetries.optimistic and name not in symmetries.support:
        ops = sorted({u.op for u in symmetries.degrees.unknown_ops})
        return ParameterReport(verdict=UNKNOWN, reason="could be scale-free, but its path "
                               f"crosses ops the analysis does not know: {_list(ops)}", **base)
    return ParameterReport(verdict=EFFECTIVE, reason=_effective_reason(name, symmetries.degrees),
                           **base)


def _ineffective_reason(name: str, g: Group, influence: Influence) -> str:
    if g.kind == "no-effect":
        return _no_effect_reason(name, influence)
    others = [m for m in g.names if m != name]
    joint = f" jointly with {short(others)}" if others else ""
    via = f", normalised by {short(g.normalising_nodes, unit='')}" if g.normalising_nodes else ""
    reason = f"scale-free{joint}: rescaling leaves every output unchanged{via}"
    if g.eps_limited:
        reason += f" (up to normalisation eps: {g.max_relative_change:.1e} relative change)"
    return reason


def _no_effect_reason(name: str, influence: Influence) -> str:
    graph, program = influence.graph, influence.graph.program
    if name not in graph.used_params:
        return "no effect on the output: forward() never uses it on the way to an output"
    absorbed = influence.absorbed_at.get(name)
    if absorbed is not None:
        where = program.module_paths.get(absorbed.node) or absorbed.node
        return "no effect on the output: " + _REMOVED_BY[absorbed.by].format(where=where)
    return "no effect on the output"


# how each mechanism of ops.offsets.MECHANISMS removes an additive offset, said plainly
_REMOVED_BY = {
    "mean subtraction": "an additive offset that the mean subtraction in '{where}' removes",
    "normalisation": "an additive offset, constant along the axes that '{where}' normalises, "
                     "which the normalisation removes",
    "softmax": "an additive offset, the same along the softmax's axis in '{where}', which the "
               "softmax cancels (it is shift-invariant)",
    "attention keys": "a term of the keys that is the same at every key position, which the "
                      "attention softmax in '{where}' cancels (each query's logits shift alike)",
    "attention mask": "a term of the attention mask that is the same along its key axis, which "
                      "the attention softmax in '{where}' cancels",
}


def _effective_reason(name: str, degrees: Degrees) -> str:
    index = degrees.variables.index(name)
    for c in degrees.constraints:
        if index in c.form.variables:
            return f"its scale is pinned: {c.why} (at node '{c.node}')"
    return "its scale is pinned by the constraints"


class _DegreeTable:
    """Every relevant node's degree as a row of one sparse matrix, so that a group's degrees at
    all nodes are one product (a node-by-node walk per group took 9 s on nf_seresnet101)."""

    def __init__(self, degrees: Degrees):
        graph = degrees.influence.graph
        self.program = graph.program
        self.nodes = [n for n in self.program.gm.graph.nodes
                      if n.name in graph.relevant and isinstance(degrees.values.get(n.name), Deg)
                      and not degrees.values[n.name].zero]
        self.index = {k: i for i, k in enumerate(degrees.variables)}
        row = {n.name: i for i, n in enumerate(self.nodes)}
        rows, cols, vals = [], [], []
        for i, n in enumerate(self.nodes):
            for k, v in degrees.values[n.name].form.terms:
                rows.append(i)
                cols.append(k)
                vals.append(float(v))
        shape = (len(self.nodes), len(degrees.variables))
        self.forms = sparse.csr_matrix((vals, (rows, cols)), shape=shape)
        # node -> its operands among the rows
        pairs = [(i, row[src.name]) for i, n in enumerate(self.nodes)
                 for src in n.all_input_nodes if src.name in row]
        self.inputs = sparse.csr_matrix(
            (np.ones(len(pairs)), ([a for a, _ in pairs], [b for _, b in pairs])),
            shape=(len(self.nodes), len(self.nodes)))
        self.eligible = np.array([n.op not in ("placeholder", "get_attr", "output")
                                  for n in self.nodes], dtype=bool)

    def normalising(self, exponents: Mapping[str, Fraction]) -> tuple[str, ...]:
        """Nodes whose input scales under the group but whose output does not."""
        s = np.zeros(self.forms.shape[1])
        for k, v in exponents.items():
            s[self.index[k]] = float(v)
        scaled = np.abs(self.forms @ s) > 1e-12
        fed = (self.inputs @ scaled.astype(float)) > 0
        hits = np.flatnonzero(~scaled & fed & self.eligible)
        return tuple(dict.fromkeys(_label(self.program, self.nodes[i]) for i in hits))


def _label(program: Program, node) -> str:
    """'blocks.0.ln_1 (LayerNorm)': the owning module and what it is; the op when the module is
    a container that merely calls it."""
    path = program.module_paths.get(node.name)
    kind = describe(node, program)
    if path:
        try:
            module = program.root.model.get_submodule(path)
        except AttributeError:
            module = None
        if module is not None and not list(module.children()):
            kind = type(module).__name__
    return f"{path or node.name} ({kind})"


def _list(items: Sequence[str], limit: int = 4) -> str:
    items = list(items)
    if len(items) <= limit:
        return ", ".join(items)
    return ", ".join(items[:limit]) + f" and {len(items) - limit} more"
