"""Op semantics: one table maps every traced op to its degree rule and its offset rule.  Its
rows are in :mod:`wdaudit.ops.table` and :mod:`wdaudit.ops.table_layers`, its leaf layers in
:mod:`wdaudit.ops.leaf_modules`; :mod:`wdaudit.ops.lookup` finds a node's op; the rule
families live beside them."""
