"""The platform's benchmark: ``python -m benchmarks`` (``make bench``); not installed.

Like pytorch/serve's ``benchmarks/`` next to its ``ts/`` package, this folder ships with the
repository, not with yoloserve: it starts its own local stack (``devstack.stack``) and measures
it. Modules:

    __main__    the Typer CLI: options, the stack, the report (--json, --markdown)
    sections    SECTIONS (name -> section function, in run order) and their Markdown writers
    context     BenchContext and SectionOptions: what every section gets
    serving     raw Ultralytics vs TorchServe vs the gateway: latency, throughput, breakdown
    feedback    rows/s of concurrent feedback writers, through the gateway and in process
    hotswap     failed requests while two versions swap under load
    loop        k-th feedback -> retrained version serving, step by step
    report      the machine's conditions and the report as Markdown
    embeddings  ms per box of Embedder.embed, no stack: python -m benchmarks.embeddings

  helpers, one module per thing they compute:
    measure     Run (p50/p95, throughput, stage means), in-process timers, paired turns, spread
    http_load   HttpCall, one request, closed-loop HTTP load generators
    counters    TorchServe's Prometheus counters: frontend and queue time per request
    images      the seeded bench image, feedback labels (true shapes, dense grids)
    rows        acknowledged feedback rows counted back from the CSV
    timeline    log times, steps between time marks, overlapping windows
"""

import os

# Idle OpenMP threads must sleep, as in the TorchServe worker (devstack.torchserve): spinning
# threads on a shared 2-core box would make the in-process figures unfairly slow. Set in the
# package so that it comes before any benchmark module imports torch.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
