"""The drift scenario (``python -m scripts.scenario``, ``make scenario``), one module per step.

What it does and its options: ``scripts/scenario/cli.py`` (also ``--help``). The modules, in
the order the scenario uses them:

- ``keys``: the API keys, from the options or ``make demo``'s key file;
- ``datasets``: the shifted splits (sent before the retrain, after it, never) and their labels;
- ``evaluation``: the weights a version serves, their mAP50, and the reporting runs;
- ``feedback``: predict + feedback through ``gateway_client``, waiting for a job and a swap;
- ``play``: the rounds of feedback and retrain, then the "after" measurement;
- ``report``: the figures of a run and the before/after table;
- ``cli``: the Typer command; ``output`` holds the console and progress bars they share,
  ``errors`` the one error that stops the scenario.
"""
