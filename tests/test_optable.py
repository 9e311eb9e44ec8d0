"""The op table and its transfer rules: every spelling binds, each family does what DESIGN.md
§3 says, unknown ops are conservative, counted, and refused in strict mode."""

import operator

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import wdaudit
from tests.support.differential import differential
from wdaudit.ops import degrees_arithmetic as A
from wdaudit.ops import degrees_elementwise as T
from wdaudit.ops import degrees_layers as L
from wdaudit.ops import lookup
from wdaudit.ops.degree import CONST, ZERO, Deg, Form
from wdaudit.ops.leaf_modules import module_op
from wdaudit.ops.op_call import Call
from wdaudit.ops.signatures import bind

aten = torch.ops.aten


def call(rule, **args):
    c = Call("n", getattr(rule, "__name__", "op"), dict(args))
    return rule(c), c


def var(i, nonneg=False):
    return Deg(Form.var(i), nonneg=nonneg)


# -- the table itself ------------------------------------------------------------------------


def test_every_spelling_in_the_table_resolves():
    """A misspelt name was dropped silently: the table's rows are validated at import."""
    assert lookup.UNRESOLVED == [], lookup.UNRESOLVED


def test_a_misspelt_or_doubled_spelling_is_caught(monkeypatch):
    from dataclasses import replace

    from wdaudit.ops import table

    first = table.ROWS[0]
    monkeypatch.setattr(table, "ROWS", [replace(first, names="aten: relu_but_misspelt")]
                        + list(table.ROWS))
    monkeypatch.setattr(lookup, "UNRESOLVED", [])
    lookup._build()
    assert lookup.UNRESOLVED == ["aten: relu_but_misspelt"]
    monkeypatch.setattr(table, "ROWS", [first, first] + list(table.ROWS[1:]))
    with pytest.raises(lookup.TableError, match="twice"):
        lookup._build()


def _rebuilt_with(monkeypatch, module, rows):
    monkeypatch.setattr(module, "ROWS", rows)
    monkeypatch.setattr(lookup, "UNRESOLVED", [])
    return lookup._build()


def test_a_norm_without_its_shifted_form_is_refused(monkeypatch):
    """A new mean-subtracting normaliser without a shifted form would get round-off instead
    of zeros in eps -> 0 runs: the table refuses it unless it says why it needs none."""
    from dataclasses import replace

    from wdaudit.ops import table_layers

    rows = list(table_layers.ROWS)
    at = next(i for i, r in enumerate(rows) if "F: layer_norm" in r.names)
    assert rows[at].shifted is not None
    rows[at] = replace(rows[at], shifted=None)
    with pytest.raises(lookup.TableError, match="shifted form"):
        _rebuilt_with(monkeypatch, table_layers, rows)
    rows[at] = replace(rows[at], unshifted="a reason")
    _rebuilt_with(monkeypatch, table_layers, rows)  # stated: accepted
    rows[at] = replace(rows[at], shifted=table_layers.S.layer_norm)  # both: a contradiction
    with pytest.raises(lookup.TableError, match="shifted form"):
        _rebuilt_with(monkeypatch, table_layers, rows)


def test_a_signature_for_a_name_the_row_lacks_is_refused(monkeypatch):
    from dataclasses import replace

    from wdaudit.ops import table

    rows = list(table.ROWS)
    at = next(i for i, r in enumerate(rows) if "pow" in r.signatures)
    rows[at] = replace(rows[at], signatures={"powr": ("input", "exponent")})
    with pytest.raises(lookup.TableError, match="'powr'"):
        _rebuilt_with(monkeypatch, table, rows)


def test_one_name_has_one_view_flag(monkeypatch):
    """conj was once a view as ``torch.conj`` and not as ``x.conj()``."""
    from wdaudit.ops import table

    views = {lookup.LOOKUP.functions[torch.conj].view, lookup.LOOKUP.methods["conj"].view,
             lookup.LOOKUP.packets[aten.conj].view}
    assert views == {True}
    rows = list(table.ROWS) + [table.Row(T.preserve, table.O.mixes, "aten: conj_copy")]
    _rebuilt_with(monkeypatch, table, rows)  # a name of its own: fine
    rows[-1] = table.Row(T.preserve, table.O.mixes, "method: as_strided")  # aten: a view
    with pytest.raises(lookup.TableError, match="two view flags"):
        _rebuilt_with(monkeypatch, table, rows)


def test_what_the_runner_reads_comes_from_the_table():
    """Replays, stand-ins, shifted forms, dtype checks and metadata-only writes are fields of
    the ops they belong to, found by every spelling and never inherited by a derived in-place
    variant (aten.copy_ writes; the functional copy's replay would not)."""
    from wdaudit.ops import kernels, shifted

    fop = lookup.function_op
    assert fop(aten.view.default).replay is kernels.view_by_reshape
    assert fop(aten.copy.default).replay is kernels.copy_values
    assert fop(aten.copy_.default).replay is None and fop(aten.copy_.default).inplace
    assert fop(F.embedding).replay is fop(aten.embedding.default).replay \
        is kernels.honest_embedding
    assert fop(aten._grouped_mm.default).stand_in is kernels.grouped_mm
    assert lookup.stand_in(aten._grouped_mm.default) is kernels.grouped_mm
    assert fop(aten._assert_tensor_metadata.default).dtype_check
    assert fop(aten.detach_.default).metadata_only and not fop(aten.add_.Tensor).metadata_only
    for spelling in (F.batch_norm, torch.batch_norm, aten.batch_norm.default):
        assert fop(spelling).shifted is shifted.batch_norm
    assert fop(aten._native_batch_norm_legit.no_stats).shifted is shifted.batch_norm_saved
    assert module_op(nn.Embedding(3, 2)).run_attrs == kernels.EMBEDDING_ATTRS


def test_the_embedding_replay_drops_the_gradient_only_arguments_in_every_spelling():
    """padding_idx given positionally (F.embedding's third argument) once raised "got
    multiple values for argument 'padding_idx'": the replay also set it as a keyword."""
    from wdaudit.ops import kernels

    ids = torch.tensor([[0, 1, 0, 2]])
    calls = [(F.embedding, lambda w: (ids, w, 0), {}),
             (F.embedding, lambda w: (ids, w, 0, None, 2.0, True), {}),
             (F.embedding, lambda w: (ids, w), dict(padding_idx=0, scale_grad_by_freq=True)),
             (torch.embedding, lambda w: (w, ids, 0, True), {}),
             (aten.embedding.default, lambda w: (w, ids), dict(padding_idx=0))]
    for target, args, kwargs in calls:
        weight = torch.randn(3, 2, dtype=torch.float64, requires_grad=True)
        out = kernels.honest_embedding(target, args(weight), kwargs)
        assert torch.equal(out, F.embedding(ids, weight.detach()))
        out.sum().backward()
        # the padding row's gradient is the forward's true one (row 0 is read twice)
        assert weight.grad[0].tolist() == [2.0, 2.0], target


def test_only_the_augmented_operators_write_in_place():
    """``operator.invert`` (``~mask``) was once taken for an in-place op by its first letter."""
    writes = {fn.__name__ for fn, op in lookup.LOOKUP.functions.items()
              if getattr(fn, "__module__", None) == "_operator" and op.inplace}
    assert writes == {"iadd", "isub", "imul", "itruediv", "setitem"}


def test_every_entry_binds_its_first_operand_by_name():
    entries = list(lookup.LOOKUP.functions.values()) + list(lookup.LOOKUP.methods.values()) \
        + list(lookup.LOOKUP.packets.values())
    assert len(entries) > 900
    for entry in entries:
        assert entry.signature, entry.name
        bound, _ = bind(entry.signature, ("X", "Y"), {})
        # the first positional operand always lands on a named parameter, never on _arg0
        assert "_arg0" not in bound, (entry.name, entry.signature)


@pytest.mark.parametrize("spelling", [torch.relu, F.relu, aten.relu.default])
def test_spellings_of_one_op_share_a_rule(spelling):
    node = torch.fx.Node(torch.fx.Graph(), "n", "call_function", spelling, (), {})
    assert lookup.lookup(node).degrees is T.relu


def test_operators_bind_left_and_right_operands():
    entry = lookup.LOOKUP.functions[operator.add]
    bound, where = bind(entry.signature, ("a", "b"), {})
    assert bound == {"input": "a", "other": "b"} and where["other"] == ("arg", 1)


def test_subclass_with_its_own_forward_is_not_taken_as_the_base_layer():
    class ChannelsFirstLN(nn.LayerNorm):  # like timm's LayerNorm2d
        def forward(self, x):
            return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)

    assert module_op(nn.LayerNorm(4)) is not None
    assert module_op(ChannelsFirstLN(4)) is None


# -- transfer rules: one family each ---------------------------------------------------------


def test_additions_equate_degrees_and_zero_is_any_degree():
    out, c = call(A.add, input=var(0), other=var(1))
    assert out.form == Form.var(0) and [k.form for k in c.constraints] == [Form.var(0) - Form.var(1)]
    out, c = call(A.add, input=var(0), other=ZERO)
    assert out.form == Form.var(0) and not c.constraints


def test_a_constant_offset_pins_the_degree_but_an_epsilon_on_a_square_does_not():
    _, c = call(A.add, input=var(0), other=1.0)
    assert [k.form for k in c.constraints] == [Form.var(0)]
    out, c = call(A.add, input=var(0, nonneg=True), other=1e-6)
    assert out.form == Form.var(0) and not c.constraints and c.eps_args == ["other"]
    _, c = call(A.add, input=var(0), other=1e-6)  # not known to be non-negative
    assert c.constraints


def test_products_add_degrees_and_powers_scale_them():
    out, _ = call(L.matmul, input=var(0), other=var(1))
    assert out.form == Form.var(0) + Form.var(1)
    out, _ = call(A.power, input=var(0), exponent=2)
    assert out.form == Form.var(0).scale(2) and out.nonneg
    out, _ = call(A.rsqrt, input=Deg(Form.var(0).scale(2)))
    assert out.form == -Form.var(0)


def test_saturating_ops_pin_their_input_relu_like_ones_do_not():
    out, c = call(T.clamp, input=var(0), min=0.0, max=None)
    assert out.form == Form.var(0) and not c.constraints
    out, c = call(T.clamp, input=var(0), min=0.0, max=6.0)
    assert out == CONST and [k.form for k in c.constraints] == [Form.var(0)]


def test_comparisons_with_zero_are_scale_invariant():
    out, c = call(T.compare, input=var(0), other=0)
    assert out.form.is_zero and not c.constraints
    _, c = call(T.compare, input=var(0), other=0.5)
    assert c.constraints


def test_normalisers_reset_the_degree_and_tie_weight_to_bias():
    out, c = call(L.layer_norm, input=var(0), normalized_shape=(4,), weight=var(1), bias=var(2),
                  eps=1e-5)
    assert out.form == Form.var(1)
    assert [k.form for k in c.constraints] == [Form.var(1) - Form.var(2)]
    assert c.eps_args == ["eps"]


def test_attention_logits_must_not_scale():
    out, c = call(L.attention, query=var(0), key=var(1), value=var(2))
    assert out.form == Form.var(2) and [k.form for k in c.constraints] == [Form.var(0) + Form.var(1)]


def test_shape_only_operands_carry_no_constraint():
    out, c = call(T.like, input=var(0), other=var(1))
    assert out.form == Form.var(0) and not c.constraints
    out, c = call(T.constant, input=var(0), dtype=None)
    assert out == CONST and not c.constraints


# -- unknown ops -----------------------------------------------------------------------------


class Exotic(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.ln = nn.LayerNorm(4)
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        return self.head(torch.special.i0(self.ln(self.fc(x))))


def test_unknown_op_raises_in_strict_mode():
    with pytest.raises(wdaudit.UnsupportedOpError, match="i0"):
        wdaudit.audit(Exotic(), torch.randn(3, 4), strict=True)


def test_unknown_op_is_counted_and_what_it_hides_is_unknown():
    torch.manual_seed(0)
    report = wdaudit.audit(Exotic(), torch.randn(3, 4), strict=False)
    assert len(report.coverage.unknown_ops) == 1 and "i0" in report.coverage.unknown_ops[0].op
    assert report.summary()["unknown_ops"] == 1
    # the LN affine could be scale-free if i0 were homogeneous: the analysis cannot tell
    assert {"ln.weight", "ln.bias"} <= report.unknown
    # fc feeds the LN: provably scale-free whatever i0 does
    assert {"fc.weight", "fc.bias"} <= report.ineffective


def test_unknown_op_on_constants_only_is_just_a_constant():
    class MaskedByBuffer(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)
            self.register_buffer("freq", torch.arange(4.0))

        def forward(self, x):
            return self.fc(x) * torch.special.i0(self.freq)

    report = wdaudit.audit(MaskedByBuffer(), torch.randn(3, 4), strict=True)
    assert not report.coverage.unknown_ops


def test_in_place_ops_keep_their_target_degree():
    class InPlace(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)
            self.gamma = nn.Parameter(torch.ones(4))
            self.ln = nn.LayerNorm(4)

        def forward(self, x):
            h = self.fc(x)
            h.mul_(self.gamma)  # no user in the graph: only later readers of h see it
            return self.ln(h) + h.sum(-1, keepdim=True)

    torch.manual_seed(0)
    report, _ = differential(InPlace(), torch.randn(5, 4))
    assert report.parameters["gamma"].verdict == "effective"


def test_mutation_through_a_view_reaches_later_readers_of_the_base():
    class ViewMutation(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)
            self.gamma = nn.Parameter(torch.ones(2))
            self.ln = nn.LayerNorm(4)
            self.head = nn.Linear(4, 2)

        def forward(self, x):
            h = self.fc(x)
            h[:, :2].mul_(self.gamma)  # writes into h through a view
            return self.head(self.ln(h))

    torch.manual_seed(0)
    report, _ = differential(ViewMutation(), torch.randn(5, 4))
    assert "gamma" not in report.ineffective


def test_setitem_into_a_buffer_of_zeros():
    class Scatter(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 3)
            self.ln = nn.LayerNorm(5)

        def forward(self, x):
            out = torch.zeros(x.shape[0], 5)
            out[:, 1:4] = self.fc(x)
            return self.ln(out)

    torch.manual_seed(0)
    differential(Scatter(), torch.randn(5, 4))


# -- aliases that torch.export spells out, broadcasting, sampling (found by the sweep) --------


# what export never emits as itself (metadata, device moves, constructors it folds) or emits
# with other outputs (fractional_max_pool: (out, indices))
NOT_EXPORTED = {"as_tensor", "cpu", "cuda", "data", "element_size", "get_device", "is_complex",
                "is_contiguous", "is_floating_point", "item", "requires_grad_", "tensor",
                "to_dense", "zero_", "fractional_max_pool2d", "fractional_max_pool3d"}


def test_every_torch_spelling_that_is_an_aten_op_is_in_the_table_as_aten_too():
    from wdaudit.ops import table, table_layers

    spelled = {(ns, name) for row in table.ROWS + table_layers.ROWS
               for ns, name in lookup._parse(row.names)}
    aten_names = {name for ns, name in spelled if ns == "aten"}
    missing = sorted({name for ns, name in spelled if ns in ("torch", "method", "F")
                      and not name.startswith("_") and hasattr(aten, name)}
                     - aten_names - NOT_EXPORTED)
    assert not missing, f"torch.export may emit aten.{missing[0]}, which has no row"


def test_every_torch_function_that_is_a_tensor_method_is_in_the_table_as_a_method_too():
    from wdaudit.ops import table, table_layers

    spelled = {(ns, name) for row in table.ROWS + table_layers.ROWS
               for ns, name in lookup._parse(row.names)}
    methods = {name for ns, name in spelled if ns == "method"}
    missing = sorted({name for ns, name in spelled if ns == "torch" and not name.startswith("_")
                      and hasattr(torch.Tensor, name)} - methods - {"real", "imag"})  # getattr
    assert not missing, f"x.{missing[0]}(...) would be an unknown op (timm gcvit: repeat_interleave)"


class Methods(nn.Module):
    """timm's gcvit calls ``x.repeat_interleave``; comparisons come as methods too."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)
        self.ln = nn.LayerNorm(6)
        self.head = nn.Linear(6, 2)

    def forward(self, x):
        h = self.ln(self.fc(x).repeat_interleave(2, dim=-1))
        return self.head(h * h.greater(0).to(h.dtype))


def test_method_spellings_match_the_oracle():
    torch.manual_seed(0)
    report, _ = differential(Methods(), torch.randn(5, 4))
    assert not report.coverage.unknown_ops
    assert {"fc.weight", "fc.bias"} <= report.ineffective


class Aliases(nn.Module):
    """convbert and gemma3n reach export as ``aten.multiply``; dac as ``broadcast_tensors``."""

    def __init__(self, branch: bool):
        super().__init__()
        self.branch = branch
        self.fc = nn.Linear(6, 6)
        self.gain = nn.Parameter(torch.rand(6) + 0.5)
        self.ln = nn.LayerNorm(6)
        self.out = nn.Linear(6, 3)

    def forward(self, x):
        if self.branch and x.shape[0] > 1:  # shape control flow: only export follows it
            x = x + 0
        h = torch.multiply(self.fc(x), self.gain)
        h = torch.subtract(h, torch.divide(h, 4.0))
        h = torch.negative(torch.true_divide(h, 2.0))
        h, _ = torch.broadcast_tensors(h, self.out.bias[:1])
        h = self.ln(h)
        return self.out(torch.clip(h, -1, 1) * torch.greater(h, 0).to(h.dtype))


@pytest.mark.parametrize("branch", [False, True], ids=["symbolic_trace", "export"])
def test_aliases_and_broadcast_tensors_match_the_oracle(branch):
    torch.manual_seed(0)
    model = Aliases(branch)
    report, _ = differential(model, torch.randn(3, 6))
    assert report.coverage.method == ("export" if branch else "symbolic_trace")
    assert not report.coverage.unknown_ops
    assert {"fc.weight", "fc.bias", "gain"} <= report.ineffective
    assert "out.bias" not in report.ineffective  # broadcast_tensors' second operand is read


class Transposed(nn.Module):
    """falcon and inkling2 write ``w.T``, which export keeps as ``aten.numpy_T`` (a view)."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(6, 6)
        self.ln = nn.LayerNorm(6)
        self.out = nn.Linear(6, 3)

    def forward(self, x):
        if x.shape[0] > 1:  # shape control flow: only export follows it
            x = x + 0
        h = self.fc(x).T  # (6, N)
        return self.out(self.ln((h * torch.arange(1.0, 7.0)[:, None]).T))


def test_numpy_t_matches_the_oracle():
    torch.manual_seed(0)
    report, _ = differential(Transposed(), torch.randn(3, 6))
    assert report.coverage.method == "export"
    assert not report.coverage.unknown_ops
    assert {"fc.weight", "fc.bias"} <= report.ineffective


class Filled(nn.Module):
    """vits fills a tensor with a tensor value (``aten.fill_.Tensor`` through export); switch
    transformers' export asks ``_has_compatible_shallow_copy_type``, a question about storage.
    With ``alias``, a view taken before the fill also reaches the output, unnormalised."""

    def __init__(self, branch: bool, alias: bool = False):
        super().__init__()
        self.branch, self.alias = branch, alias
        self.fc = nn.Linear(6, 6)
        self.gain = nn.Parameter(torch.tensor(1.5))
        self.ln = nn.LayerNorm(6)
        self.out = nn.Linear(6, 3)

    def forward(self, x):
        if self.branch and x.shape[0] > 1:  # shape control flow: only export follows it
            x = x + 0
        scale = torch.empty_like(x)
        view = scale.view(-1)
        scale.fill_(self.gain)
        if self.branch and torch._has_compatible_shallow_copy_type(x, scale):
            scale = scale + 0
        y = self.out(self.ln(self.fc(x) * scale))
        return y + view.mean() if self.alias else y


@pytest.mark.parametrize("branch, alias", [(False, False), (True, False), (False, True)],
                         ids=["symbolic_trace", "export", "symbolic_trace-view"])
def test_fill_with_a_tensor_matches_the_oracle(branch, alias):
    torch.manual_seed(0)
    report, _ = differential(Filled(branch, alias), torch.randn(3, 6))
    assert report.coverage.method == ("export" if branch else "symbolic_trace")
    assert not report.coverage.unknown_ops
    assert {"fc.weight", "fc.bias"} <= report.ineffective
    # the fill reaches the output through the view as well: gain's scale is not free there
    assert ("gain" in report.ineffective) == (not alias)


class Sampled(nn.Module):
    """deformable_detr: ``grid_sample`` is linear in what it samples; the grid is not."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3, padding=1)
        self.where = nn.Linear(2, 2)
        self.norm = nn.GroupNorm(1, 4)
        self.head = nn.Linear(4 * 16, 3)

    def forward(self, x, points):
        grid = torch.tanh(self.where(points))  # (N, 4, 4, 2) in [-1, 1]
        h = F.grid_sample(self.conv(x), grid, align_corners=False)
        return self.head(self.norm(h).flatten(1))


def test_grid_sample_is_linear_in_its_input_and_pins_its_grid():
    torch.manual_seed(0)
    report, _ = differential(Sampled(), (torch.randn(2, 2, 8, 8), torch.randn(2, 4, 4, 2)))
    assert not report.coverage.unknown_ops
    assert {"conv.weight", "conv.bias"} <= report.ineffective
    assert not {"where.weight", "where.bias"} & report.ineffective


class Recurrent(nn.Module):
    """nemotron/parakeet ASR decoders: an LSTM that torch.export spells ``aten.lstm``."""

    def __init__(self):
        super().__init__()
        self.rnn = nn.LSTM(4, 6, batch_first=True)
        self.proj = nn.Linear(6, 6)
        self.norm = nn.LayerNorm(6)
        self.head = nn.Linear(6, 3)

    def forward(self, x):
        if x.shape[0] > 1:  # shape control flow: only export follows it
            x = x + 0
        out, _ = self.rnn(x)
        return self.head(self.norm(self.proj(out)))


def test_recurrent_layers_through_export_pin_what_they_read():
    torch.manual_seed(0)
    report, _ = differential(Recurrent(), torch.randn(2, 5, 4))
    assert report.coverage.method == "export" and not report.coverage.unknown_ops
    assert {"proj.weight", "proj.bias"} <= report.ineffective
    assert not {n for n in report.ineffective if n.startswith("rnn.")}
