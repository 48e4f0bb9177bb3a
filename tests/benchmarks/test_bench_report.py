"""benchmarks.report and benchmarks.sections: every section has a Markdown writer, and a report
of every section renders as the conditions line and one table per section, in run order."""

from __future__ import annotations

from typing import Any

from benchmarks.report import load_average, report_markdown
from benchmarks.sections import DEFAULT_SECTIONS, MARKDOWN, SECTIONS


def _report() -> dict[str, Any]:
    run = {"p50_ms": 50.0, "p95_ms": 70.0, "throughput_rps": 19.5}
    runs = dict.fromkeys(("raw", "raw-sequential", "torchserve@1", "gateway@1",
                          "torchserve@8", "gateway@8"), run)
    ratio = {"p50_vs_raw": 1.1, "paired_median_vs_raw": 1.05,
             "throughput_8_vs_raw_sequential": 1.02}
    write = {"calls_per_s": 18.4, "rows_per_call": 2.4, "rows_per_s": 44, "p50_ms": 50,
             "p95_ms": 90, "failed": 0, "rows_acknowledged": 100, "rows_in_file_added": 100,
             "rows_lost": 0}
    counts = {"rows_acknowledged": 100, "rows_lost": 0, "rows_duplicated": 0}
    intent = {"requests": 50, "accepted": 50, "p50_ms": 8.0, "p99_ms": 20.0}
    latency = {"requests": 10, "p50_ms": 1, "p95_ms": 2, "p99_ms": 3, "max_ms": 4, "over_1s": 0}
    return {
        "command": "python -m benchmarks", "options": {"clients": 8},
        "machine": {"cpu_count": 2, "torch": "2.x", "cpu_model": "AMD EPYC",
                    "cpu_flags": ["avx2", "avx512f"], "load_average_start": (1.0, 2.0, 3.0),
                    "load_average_end": (1.5, 2.0, 3.0)},
        "sections": {
            "serving": {"runtime": "onnx", "worker_threads": 2, "raw_default_threads": 1,
                        "raw_torch_threads": 2, "imgsz": 320,
                        "images": {"640 px": {"runs": runs,
                                              "ratios": {"torchserve": ratio, "gateway": ratio}},
                                   "photo PNG": {"runs": runs,
                                                 "ratios": {"torchserve": ratio,
                                                            "gateway": ratio}}}},
            "hops": {"images": {"photo PNG": {
                "transport": {"rest-multipart": run, "grpc": {**run, "p50_ms": 40.0}},
                "route_work": {"boxes": 3, "inspect_image_us": 20.0, "json_loads_us": 5.0,
                               "parse_and_validate_us": 60.0}}}},
            "feedback": {"writers": 32, "calls": 400, "gateway": {"shapes": write},
                         "predict": {"shapes": write}, "recorder": {"shapes": write},
                         "append": {"shapes": write}},
            "scaleout": {
                "cpu_model": "AMD EPYC", "calls": 400, "writers": 32, "intents": 50,
                "goals": {"rows_per_s": {"sqlite": 400.0}, "intent_p99_ms": 100.0},
                "deployments": {"sqlite": {
                    **write, "gateways": 1, "store": counts, "csv": counts,
                    "activate": intent, "retrain": intent}}},
            "hotswap": {"clients": 8, "image_px": 320, "swaps": 4, "versions": ["1", "2"],
                        "drain_s": 2.0, "pause_s": 1.0, "wall_s": 30.0,
                        "share_of_time_swapping": 0.4, "failed": 0, "requests": 2000,
                        "swap_s": {"min": 1.0, "median": 2.0, "max": 3.0},
                        "stale_answers_after_swap": 0, "throughput_rps": 60.0,
                        "latency_all": latency, "latency_during_swaps": latency,
                        "latency_between_swaps": {"requests": 0}},
            "loop": {"job": {"data": {"ref_train": 1}, "metrics": {"candidate": {"map50": 0.9}}},
                     "every_k": 10, "feedback_images": 4, "feedback_rows": 10, "job_id": "r-1",
                     "new_version": "2", "reference_dir": "/ref",
                     "retrain_env": {"RETRAIN_EVERY_K": "10"},
                     "seconds_after_trigger": {"sent": 0.0, "serving": 250.0},
                     "steps_s": {"sent": None, "serving": 250.0}, "total_s": 250.0},
        },
    }


def test_every_section_has_a_markdown_writer_and_runs_by_default() -> None:
    assert list(MARKDOWN) == list(SECTIONS) == DEFAULT_SECTIONS.split(",")


def test_report_markdown_renders_every_section() -> None:
    text = report_markdown(_report())
    assert text.startswith("`python -m benchmarks`\n\nCPU: AMD EPYC, 2 cores; flags: avx2, "
                           "avx512f.\n\n2 cores, torch 2.x; load average")
    assert "1.00 / 2.00 / 3.00 at start, 1.50 / 2.00 / 3.00 at end." in text
    assert "| 640 px | gateway | 50.0 | 70.0 | 1.10 | 1.05 | 19.50 | 19.50 | 1.02 |" in text
    assert "| photo PNG | raw | 50.0 | 70.0 | 1.00 | 1.00 | 19.50 | | |" in text
    assert "Runtime onnx; worker threads 2" in text
    assert "| photo PNG | grpc | 40.0 | 70.0 | 0.80 |" in text
    assert "| `FeedbackLedger.commit` in process | shapes | 18.4 | 2.4 | 44 |" in text
    assert "| 1 gateway, SQLite | 18.4 | 44 | 50 | 90 | 0 | 100 | 0 | 0 | 0 / 0 | " in text
    assert "**0 failed of 2000**" in text and "| between swaps | 0 | None |" in text
    assert "(existing)." in text and "| serving | 250.0 | 250.0 |" in text
    assert "**Total: k-th feedback -> `/predict` answers v2: 250.0 s** (goal <= 600 s)." in text
    assert text.endswith("\n")


def test_load_average_is_three_figures() -> None:
    assert len(load_average()) == 3
