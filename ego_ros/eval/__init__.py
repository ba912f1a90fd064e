"""ego_ros.eval: the Ego paper's evaluation protocol (section 4) on the published benchmarks.

Modules: ``datasets`` (a package: one reader per benchmark layout, ``KIND:PATH`` specs), ``protocols``
(prompts, answer parsing, name matching), ``metrics`` (pure metric functions), ``methods`` (compared
methods as engine settings),
``judges`` (open-answer judges), ``cache`` (resumable per-sample results), ``work`` (the units a run
caches), ``session`` (the engine side of a run), ``judging`` (verdicts on open answers), ``results``
(``results.json`` and the other outputs), ``runner`` (``run_eval``, which drives them), ``report``
(Markdown, plots, paper-shaped tables, ``compare``) and ``cli`` (``ego-ros eval``).
Nothing is imported here so that ``import ego_ros.eval`` stays light (no torch, no matplotlib).
"""
