"""Stage 9: join the verdicts with the optimizer's actual decay settings into findings.

The decay settings are read from the optimizer's param groups (or assumed, without one);
each rule of :mod:`wdaudit.rules` that applies becomes a :class:`~wdaudit.report.Finding`."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable, Mapping, Sequence

import torch

from ...report import INEFFECTIVE, UNKNOWN, Finding, Location, ParameterReport
from ...rules import ASSUME_CHOICES, RULES
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


@dataclass(frozen=True)
class Policy:
    """What the findings depend on beyond the verdicts: the decay settings, where a finding
    points, and the parameters never to name (``ignore-parameters``)."""

    decay: DecaySettings
    locate: Locate = field(default=lambda names: Location())
    skip: Callable[[str], bool] = field(default=lambda name: False)


@dataclass(frozen=True)
class Findings:
    parameters: Mapping[str, ParameterReport]  # the verdicts, with each one's weight decay
    findings: tuple[Finding, ...]


def find(verdicts: Verdicts, policy: Policy) -> Findings:
    """The findings for these verdicts and decay settings; skipped parameters are never
    reported, though they still count as decayed."""
    decay, locate, skip = policy.decay, policy.locate, policy.skip
    parameters = verdicts.parameters
    if decay.assumed is None:
        parameters = {n: replace(p, weight_decay=decay.weight_decay.get(n))
                      for n, p in parameters.items()}
    groups = verdicts.groups
    out: list[Finding] = []
    for g in groups:
        holding = [n for n in g.names
                   if parameters[n].verdict == INEFFECTIVE and g.id in parameters[n].groups]
        if not holding:
            continue
        decayed = [n for n in holding if n in decay.decayed and not skip(n)]
        if not decayed:
            continue
        assumed = f" (decay assumed: --assume-decay {decay.assumed})" if decay.assumed else ""
        if g.kind == "no-effect":
            (name,) = decayed
            reason = parameters[name].reason
            out.append(Finding("WD003", RULES["WD003"].severity,
                               f"weight decay on '{name}', which has {reason}; the decay only "
                               f"shrinks it towards zero{assumed}", (name,), locate((name,))))
            continue
        shown = [n for n in g.names if not skip(n)]  # ignored parameters are never named
        rest = sorted(n for n in shown if n not in decayed)
        together = f" together with {_short(rest)}" if rest else (" together" if len(decayed) > 1 else "")
        via = f"; normalised by {_short(g.normalising_nodes)}" if g.normalising_nodes else ""
        eps = " — invariance is eps-limited" if g.eps_limited else ""
        out.append(Finding(
            "WD001", RULES["WD001"].severity,
            f"weight decay on {_short(decayed)} cannot regularise: the output does not change "
            f"when {'it is' if len(decayed) == 1 else 'they are'} rescaled{together}{via}{eps}. "
            f"Decay here only sets the effective learning rate (angular step size){assumed}",
            tuple(decayed), locate(tuple(decayed))))
        undecayed = [n for n in shown if n not in decay.decayed]
        if undecayed and len(g.names) > 1:
            out.append(Finding(
                "WD004", RULES["WD004"].severity,
                f"scale-free group {g.id} is only partly decayed: {_short(decayed)} decayed, "
                f"{_short(undecayed)} not; the undecayed members can grow to compensate",
                tuple(shown), locate(tuple(decayed))))
    out += _unconfirmed(groups, parameters, decay, locate, skip)
    for c in decay.coupled:
        members = tuple(n for n in c.parameters if not skip(n))
        if not members:
            continue
        out.append(Finding(
            "WD002", RULES["WD002"].severity,
            f"{c.optimizer} applies weight_decay={c.weight_decay:g} as coupled L2 to "
            f"{len(members)} parameter(s): the adaptive step divides it by each weight's "
            f"gradient scale. Use AdamW (decoupled decay) unless this is intended",
            members, locate(members[:1])))
    return Findings(parameters, tuple(out))


def _unconfirmed(groups, parameters, decay, locate, skip) -> list[Finding]:
    """WD005: decayed parameters left unknown by claims that confirmation could not confirm,
    one finding per reason (a confirmation that could not run is never a pass)."""
    by_note: dict[str, list[str]] = {}
    for g in groups:
        if g.confirmed:
            continue
        names = by_note.setdefault(g.note or "not confirmed numerically", [])
        for n in g.names:
            p = parameters.get(n)
            if p is not None and p.verdict == UNKNOWN and g.id in p.groups \
                    and n in decay.decayed and not skip(n) and n not in names:
                names.append(n)
    assumed = f" (decay assumed: --assume-decay {decay.assumed})" if decay.assumed else ""
    out = []
    for note, names in by_note.items():
        if not names:
            continue
        out.append(Finding(
            "WD005", RULES["WD005"].severity,
            f"weight decay on {_short(names)}: statically scale-free or without effect, but "
            f"not confirmed ({note.removeprefix('cannot confirm: ')}); reported unknown, "
            f"decay judged nothing{assumed}", tuple(names), locate(tuple(names))))
    return out


def _short(names, limit: int = 3) -> str:
    names = sorted(names)
    quoted = [f"'{n}'" for n in names[:limit]]
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(quoted) + more
