"""Shared assertions: compare wdaudit's static claims with the brute-force oracle."""

from __future__ import annotations

import torch

from tests.support import oracle
import wdaudit


def differential(model: torch.nn.Module, inputs, *, int_high: int | None = None,
                 draws: int | None = None, **audit_kwargs):
    """Audit ``model`` and check every claim against the numerical oracle.

    Soundness: nothing reported ineffective that the oracle refutes.  Recall: everything the
    oracle finds ineffective is reported (and nothing is left unknown).  Every group's exponent
    vector is itself a null direction of the oracle's Jacobian.
    """
    report = wdaudit.audit(model, inputs, **audit_kwargs)
    trained = _trained(model, audit_kwargs.get("optimizer"))
    truth = oracle.check(model, inputs, int_high=int_high, draws=draws, trained=trained)
    frozen = {n for n, _ in model.named_parameters()} - trained
    assert report.frozen == frozen, f"held fixed but not reported so: " \
        f"{sorted(frozen - report.frozen)}; reported frozen though trained: " \
        f"{sorted(report.frozen - frozen)}"
    claimed = {m for g in report.groups for m in g.names}
    assert not claimed & frozen, f"claims about frozen tensors: {sorted(claimed & frozen)}"
    refuted = report.ineffective - truth.ineffective
    assert not refuted, f"reported ineffective but refuted numerically: {sorted(refuted)} " \
        f"(residuals {[f'{truth.residual[n]:.1e}' for n in sorted(refuted)]})"
    missed = truth.ineffective - report.ineffective
    assert not missed, f"ineffective numerically but not reported: {sorted(missed)} " \
        f"(verdicts {[report.parameters[n].verdict for n in sorted(missed)]})"
    assert not report.unknown, f"unknown verdicts: {sorted(report.unknown)}"
    for g in report.groups:
        assert g.confirmed, f"group {g.id} not confirmed: {g.note}"
        if g.kind != "no-effect":
            r = truth.residual_of({m.name: float(m.exponent) for m in g.members})
            assert r <= oracle.TOL, f"group {g.id} {g.names} is not a null direction ({r:.1e})"
    return report, truth


def _trained(model: torch.nn.Module, optimizer) -> set[str]:
    """What the run trains, read independently of the product: ``requires_grad``, and held
    by one of the optimizers where any are given (one, a list, or a dict of them)."""
    if optimizer is None:
        held = None
    else:
        found = list(optimizer.values()) if isinstance(optimizer, dict) else \
            list(optimizer) if isinstance(optimizer, (list, tuple)) else [optimizer]
        held = {id(p) for o in found for g in o.param_groups for p in g["params"]}
    return {n for n, p in model.named_parameters()
            if p.requires_grad and (held is None or id(p) in held)}
