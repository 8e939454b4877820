"""The validation gate and curation (issue #8): prove a pack's bytes, load and smoke-test it in a sandbox,
and move ``ns/model@curated`` only for packs that pass, are trusted and are replicated.

Modules: ``config`` (budgets and policy), ``shards`` (gather verified shard files), ``runner`` (the
sandbox subprocess), ``validation`` (the ``validate`` job), ``curation`` (the rule, the pointer, degrade
handling, manual curate), ``checks``/``local``/``remote`` (``modelpack gate``) and ``junit``.
"""
