"""Studies run on top of the library, each importable and tested on its own; scripts/ holds their command lines.

- ``halting_study``: adaptive reasoning depth on a trained run (rules tuned on validation, oracle, timing).
- ``foundation``, ``reasoning_cost``, ``training_steps``, ``scale``, ``one_pass``, ``lora_cache``: the benchmark
  suites (``suites`` runs them), sharing ``reports`` (machine header, Markdown and JSON files) and ``timing``
  (interleaved rounds).
- ``seeds``: one preset trained with several seeds, summarised as mean +/- std.
- ``compare``: finished runs side by side, and groups of seeds compared with their uncertainty.
"""
