"""Op semantics: one table (:mod:`wdaudit.ops.table`, with its leaf-module half in
:mod:`wdaudit.ops.leaf_modules`) maps every traced op to its degree rule and its offset rule;
the rule families live beside it."""
