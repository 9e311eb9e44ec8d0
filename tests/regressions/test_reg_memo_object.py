"""Regression: OmDet-Turbo keeps its text embeddings in LRU cache objects keyed by prompt
(``language_cache_class``: an object holding an OrderedDict of tensors and a count of its
entries).  Only memo dicts held directly by a module were emptied before each run, so every
run after the first read the embeddings the first one made: the trace never saw the text
encoder, and the audit called all of its parameters unused ("forward() never uses it"), a claim
every later run confirmed.  Memo objects are now replaced by emptied copies on the working copy,
and the user's own cache is left as it was."""

from collections import OrderedDict

import pytest
import torch
from torch import nn

import wdaudit


class PromptCache:
    """As OmDet-Turbo's: evicts by a count of its entries."""

    def __init__(self, capacity: int):
        self.cache = OrderedDict()
        self.capacity = capacity
        self.current_load = 0

    def put(self, key, value):
        if key not in self.cache:
            if self.current_load >= self.capacity:
                self.cache.popitem(last=False)
            else:
                self.current_load += 1
        self.cache[key] = value


class PromptedDetector(nn.Module):
    def __init__(self, capacity: int):
        super().__init__()
        self.text = nn.Sequential(nn.Embedding(16, 8), nn.Linear(8, 8))
        self.fc, self.ln, self.head = nn.Linear(8, 8), nn.LayerNorm(8), nn.Linear(8, 3)
        self.language_cache_prompt = PromptCache(capacity)

    def forward(self, x, prompt):
        key = tuple(prompt.tolist())  # by value: neither symbolic_trace nor export follows it
        if key not in self.language_cache_prompt.cache:
            self.language_cache_prompt.put(key, (self.text(prompt).mean(0), prompt > 0))
        embedding, _ = self.language_cache_prompt.cache[key]
        return self.head(self.ln(self.fc(x)) * embedding)


@pytest.mark.parametrize("grad, capacity", [(False, 4), (True, 4), (False, 1)],
                         ids=["no_grad", "training", "full"])
def test_a_memo_object_is_emptied_before_every_run_and_the_users_left_as_it_was(grad, capacity):
    # full: its capacity equals its count of entries, and must not be taken for that count
    torch.manual_seed(0)
    model, x, prompt = PromptedDetector(capacity), torch.randn(4, 8), torch.tensor([3, 5, 7])
    with torch.set_grad_enabled(grad):  # (with autograd on, its entries refuse deepcopy)
        model(x, prompt)  # the user ran it: their cache holds an embedding of their weights
    theirs = model.language_cache_prompt
    entries = {k: v[0].clone() for k, v in theirs.cache.items()}
    report = wdaudit.audit(model, (x, prompt))
    assert report.confirmation.performed and not report.confirmation.defects
    for name in ("text.0.weight", "text.1.weight", "text.1.bias", "head.weight"):
        assert report.parameters[name].verdict == "effective", name
    assert {"fc.weight", "fc.bias"} <= report.ineffective  # feed the norm
    assert model.language_cache_prompt is theirs and theirs.current_load == 1
    assert theirs.cache.keys() == entries.keys()
    assert all(torch.equal(theirs.cache[k][0], v) for k, v in entries.items())


def test_an_object_holding_two_memos_has_both_emptied():
    # (each was once emptied on its own copy of the object, the second copy undoing the first)
    from wdaudit.engine.tracing.working_copy import forget_caches

    class TwoCaches:
        def __init__(self):
            self.classes, self.tasks = {"a": torch.ones(2)}, {"b": (torch.ones(2), torch.ones(1))}

    holder = nn.Module()
    holder.language_cache = theirs = TwoCaches()
    forget_caches(holder)
    assert holder.language_cache is not theirs
    assert holder.language_cache.classes == {} and holder.language_cache.tasks == {}
    assert list(theirs.classes) == ["a"] and list(theirs.tasks) == ["b"]  # yours as it was
