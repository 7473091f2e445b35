"""report.py's judgements on a made-up suite result: plain tests (no timing), run with the
rest of bench/ (also under --benchmark-disable)."""
import importlib.util
from pathlib import Path

# report.py is a script beside this file, not a module on the path (importlib mode)
_spec = importlib.util.spec_from_file_location("report", Path(__file__).with_name("report.py"))
report = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(report)


def bench(kind, impl, seconds, group="g", **info):
    return {"group": group, "stats": {"median": seconds, "min": seconds},
            "extra_info": {"kind": kind, "config": "mnist", "impl": impl, **info}}


def predict_results(cnet_s, reference_s, floor_s):
    flops = 2_183_680_000
    return report.Results({"benchmarks": [
        bench("predict", "cnet", cnet_s, samples=10_000, flops=flops),
        bench("predict", "reference", reference_s, samples=10_000, flops=flops),
        bench("predict", "gemm_floor", floor_s, samples=10_000, flops=flops)]})


def test_a_miss_that_rounds_to_the_target_shows_three_decimals():
    assert report.near_digits(1.084, 1.08) == 3
    assert report.near_digits(1.09, 1.08) == 2
    assert report.gap(1.084, 1.08, at_least=False) == "1.004× over"
    assert report.gap(14.91, 15, at_least=True) == "1.01× short"
    assert report.gap(1.07, 1.08, at_least=False) == ""


def test_predict_row_names_what_the_products_alone_reach():
    rows = report.target_rows(predict_results(0.0135, 0.0155, 0.0139))
    (row,) = [r for r in rows if r[0].startswith("predict")]
    assert row[1] == "1.15×" and row[4] is False
    assert row[5] == "2.61× short (the products alone: 1.12×)"


def test_inference_table_gives_each_implementation_its_flop_rate():
    text = "\n".join(report.inference(predict_results(0.0135, 0.0155, 0.0139)))
    assert "| cnet | 740.7k | 13.5 ms | 1.00× | 162 |" in text
    assert "| NumPy reference | 645.2k | 15.5 ms | 1.15× | 141 |" in text
    assert "products at 423 GFLOP/s or more" in text
