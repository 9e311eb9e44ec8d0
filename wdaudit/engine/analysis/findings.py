"""Stage 9: join the verdicts with the optimizer's actual decay settings into findings.

The decay settings are read from the optimizer's param groups (or assumed, without one);
each rule of :mod:`wdaudit.rules` that applies becomes a :class:`~wdaudit.report.Finding`."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable, Mapping, Sequence

import torch

from ...report import INEFFECTIVE, UNKNOWN, Finding, Group, Location, ParameterReport
from ...rules import ASSUME_CHOICES, RULES
from .names import Rank, components, default_rank, ordered, short
from .training import Training, training
from .verdicts import Verdicts

_ADAPTIVE = ("Adam", "Adamax", "NAdam", "RAdam", "RMSprop", "Adagrad", "Adadelta")


@dataclass(frozen=True)
class CoupledDecay:
    optimizer: str
    weight_decay: float
    parameters: tuple[str, ...]


@dataclass(frozen=True)
class DecaySettings:
    weight_decay: Mapping[str, float | None]  # from the optimizer; None when not optimised
    decayed: frozenset[str]
    assumed: str | None  # "all" | "matrices" | "none" when there was no optimizer
    coupled: tuple[CoupledDecay, ...] = ()


def decay_settings(params: Mapping[str, torch.Tensor], optimizer=None,
                   assume: str = "all") -> DecaySettings:
    """Each parameter's decay: read from the optimizer that holds it (``optimizer``: one, a
    sequence, a dict, or a :class:`~wdaudit.engine.analysis.training.Training`), else assumed.  Only
    trained parameters are ever decayed: training does not touch a frozen one."""
    run = optimizer if isinstance(optimizer, Training) else training(params, optimizer)
    if not run.given:
        if assume not in ASSUME_CHOICES:
            raise ValueError(f"assume_decay must be one of {', '.join(ASSUME_CHOICES)}, got {assume!r}")
        trainable = {n for n, p in params.items() if p.requires_grad}
        if assume == "all":
            decayed = trainable
        elif assume == "matrices":
            decayed = {n for n in trainable if params[n].dim() >= 2}
        else:
            decayed = set()
        return DecaySettings({n: None for n in params}, frozenset(decayed), assume)
    names = {id(p): n for n, p in params.items()}
    wd: dict[str, float | None] = {n: None for n in params}
    coupled = []
    for opt in run.optimizers:
        for group in opt.param_groups:
            value = float(group.get("weight_decay", 0.0) or 0.0)
            members = tuple(names[id(p)] for p in group["params"] if id(p) in names)
            for n in members:
                wd[n] = value
            moving = tuple(n for n in members if run.why_fixed(params[n]) is None)
            if value > 0 and moving and _is_coupled_adaptive(opt, group):
                coupled.append(CoupledDecay(type(opt).__name__, value, moving))
    decayed = frozenset(n for n, v in wd.items() if v and run.why_fixed(params[n]) is None)
    return DecaySettings(wd, decayed, None, tuple(coupled))


def _is_coupled_adaptive(optimizer, group) -> bool:
    if group.get("decoupled_weight_decay", False):
        return False
    names = {c.__name__ for c in type(optimizer).__mro__}
    if "AdamW" in names:
        return False
    return bool(names & set(_ADAPTIVE))


Locate = Callable[[Sequence[str]], Location]
Relate = Callable[[Sequence[str]], tuple[Location, ...]]


@dataclass(frozen=True)
class Policy:
    """What the findings depend on beyond the verdicts: the decay settings, where a finding
    points (and the related places, inside a library, that built what it names), the
    parameters never to name (``ignore-parameters``) and the order names are shown in."""

    decay: DecaySettings
    locate: Locate = field(default=lambda names: Location())
    skip: Callable[[str], bool] = field(default=lambda name: False)
    rank: Rank = default_rank
    relate: Relate = field(default=lambda names: ())


@dataclass(frozen=True)
class Findings:
    parameters: Mapping[str, ParameterReport]  # the verdicts, with each one's weight decay
    findings: tuple[Finding, ...]


@dataclass(frozen=True)
class _Ray:
    """One confirmed scaling claim as the findings see it."""

    group: Group
    decayed: tuple[str, ...]  # decayed, ineffective through this claim, not skipped
    shown: tuple[str, ...]  # every member that may be named
    undecayed: tuple[str, ...]  # members training does not decay (WD004)


def find(verdicts: Verdicts, policy: Policy) -> Findings:
    """The findings for these verdicts and decay settings; skipped parameters are never
    reported, though they still count as decayed.  Claims that share a member are one set of
    tensors that scale together: one WD001 (and at most one WD004) names them all, its
    ``groups`` the claims (the basis of that set) behind it."""
    decay, skip = policy.decay, policy.skip
    parameters = verdicts.parameters
    if decay.assumed is None:
        parameters = {n: replace(p, weight_decay=decay.weight_decay.get(n))
                      for n, p in parameters.items()}
    groups = verdicts.groups
    out: list[Finding] = []
    rays: dict[int, _Ray] = {}
    for g in groups:
        holding = [n for n in g.names
                   if parameters[n].verdict == INEFFECTIVE and g.id in parameters[n].groups]
        decayed = tuple(n for n in holding if n in decay.decayed and not skip(n))
        if not decayed:
            continue
        if g.kind == "no-effect":
            out.append(_no_effect(decayed[0], parameters[decayed[0]].reason, g.id, policy))
            continue
        shown = tuple(n for n in g.names if not skip(n))  # ignored parameters are never named
        undecayed = tuple(n for n in shown if n not in decay.decayed) if len(g.names) > 1 else ()
        rays[g.id] = _Ray(g, decayed, shown, undecayed)
    for ids in components({i: r.group.names for i, r in rays.items()}):
        together = [rays[i] for i in ids]
        out.append(_scale_free(together, policy))
        partial = [r for r in together if r.undecayed]
        if partial:
            out.append(_partly_decayed(partial, policy))
    out += _unconfirmed(groups, parameters, decay, policy)
    for c in decay.coupled:
        members = tuple(n for n in c.parameters if not skip(n))
        if members:
            out.append(_finding("WD002", policy, members, members[:1], optimizer=c.optimizer,
                                weight_decay=c.weight_decay, count=len(members)))
    return Findings(parameters, tuple(out))


def _assumed(decay: DecaySettings) -> str:
    return f" (decay assumed: --assume-decay {decay.assumed})" if decay.assumed else ""


def _finding(code: str, policy: Policy, members: Sequence[str], where: Sequence[str],
             variant: str = "", groups: tuple[int, ...] = (), **args) -> Finding:
    """Rule ``code``'s finding about ``members``: its message template (rules.py) filled with
    ``args``, located at ``where``'s first tensor, related to where a library built each."""
    rule = RULES[code]
    return Finding(code, rule.severity, rule.text(variant, **args), tuple(members),
                   policy.locate(tuple(where)), groups=groups,
                   related=policy.relate(tuple(where)))


def _no_effect(name: str, reason: str, group: int, policy: Policy) -> Finding:
    return _finding("WD003", policy, (name,), (name,), groups=(group,), name=name,
                    reason=reason, assumed=_assumed(policy.decay))


def _scale_free(rays: Sequence[_Ray], policy: Policy) -> Finding:
    rank = policy.rank
    decayed = ordered((n for r in rays for n in r.decayed), rank)
    rest = ordered((n for r in rays for n in r.shown if n not in decayed), rank)
    nodes = list(dict.fromkeys(n for r in rays for n in r.group.normalising_nodes))
    common = dict(names=short(decayed, rank),
                  normalised=f"; normalised by {short(nodes, unit='')}" if nodes else "",
                  eps=" — invariance is eps-limited" if any(r.group.eps_limited for r in rays)
                  else "", assumed=_assumed(policy.decay))
    ids = tuple(r.group.id for r in rays)
    one = len(decayed) == 1
    if len(rays) > 1:
        return _finding("WD001", policy, decayed, decayed, "set", ids, rays=len(rays),
                        subject="it belongs to" if one else "they form",
                        others=f" with {short(rest, rank)}" if rest else "", **common)
    together = f" together with {short(rest, rank)}" if rest else "" if one else " together"
    return _finding("WD001", policy, decayed, decayed, "", ids, together=together,
                    subject="it is" if one else "they are", **common)


def _partly_decayed(rays: Sequence[_Ray], policy: Policy) -> Finding:
    rank = policy.rank
    decayed = ordered((n for r in rays for n in r.decayed), rank)
    ids = ", ".join(str(r.group.id) for r in rays)
    return _finding("WD004", policy, ordered((n for r in rays for n in r.shown), rank), decayed,
                    groups=tuple(r.group.id for r in rays),
                    which=f"group {ids} is" if len(rays) == 1 else f"groups {ids} are",
                    decayed=short(decayed, rank),
                    undecayed=short(ordered((n for r in rays for n in r.undecayed), rank), rank))


def _unconfirmed(groups, parameters, decay, policy: Policy) -> list[Finding]:
    """WD005: decayed parameters left unknown by claims that confirmation could not confirm,
    one finding per reason (a confirmation that could not run is never a pass)."""
    by_note: dict[str, tuple[list[str], list[int]]] = {}
    for g in groups:
        if g.confirmed:
            continue
        names, ids = by_note.setdefault(g.note or "not confirmed numerically", ([], []))
        for n in g.names:
            p = parameters.get(n)
            if p is not None and p.verdict == UNKNOWN and g.id in p.groups \
                    and n in decay.decayed and not policy.skip(n) and n not in names:
                names.append(n)
                if g.id not in ids:
                    ids.append(g.id)
    out = []
    for note, (names, ids) in by_note.items():
        if not names:
            continue
        names = list(ordered(names, policy.rank))
        out.append(_finding("WD005", policy, names, names, groups=tuple(ids),
                            names=short(names, policy.rank), assumed=_assumed(decay),
                            note=note.removeprefix("cannot confirm: ")))
    return out
