"""Turn a pytest-benchmark JSON of bench/ into a markdown report of ratios.

    python bench/report.py results.json [-o report.md]
    python bench/report.py --run [-o bench/RESULTS.md] [--json PATH] [-- PYTEST_ARGS...]

--run first runs the suite (`python -m pytest bench/ --benchmark-json=PATH -q` plus
PYTEST_ARGS), then writes the report: the one command that regenerates bench/RESULTS.md.

Every ratio comes from one run (the same machine state), from median round times:
throughput = extra_info["samples"] / median seconds.
"""
import argparse
import json
import math
import os
import statistics
import subprocess
import sys
from collections import defaultdict

TRAIN_CONFIGS = ["tiny", "mnist", "mnist-b32", "mnist-b256", "wide"]
TRAIN_IMPLS = ["cnet", "reference", "pytorch", "pytorch_fused", "gemm_floor"]
IMPL_NAMES = {"cnet": "cnet", "reference": "NumPy reference", "pytorch": "PyTorch eager",
              "pytorch_fused": "PyTorch fused Adam", "gemm_floor": "GEMM floor"}


def fmt_rate(x):
    if x is None:
        return "–"
    if x >= 1e6:
        return f"{x / 1e6:.2f}M"
    if x >= 1e3:
        return f"{x / 1e3:.1f}k"
    return f"{x:.0f}"


def fmt_time(s):
    if s is None:
        return "–"
    for unit, scale in (("s", 1), ("ms", 1e-3), ("µs", 1e-6), ("ns", 1e-9)):
        if s >= scale:
            return f"{s / scale:.3g} {unit}"
    return f"{s / 1e-9:.3g} ns"


def fmt_ratio(x, digits=2):
    return "–" if x is None or not math.isfinite(x) else f"{x:.{digits}f}×"


def fmt_bytes(n):
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n} B"


def div(a, b):
    return None if a is None or b is None or b == 0 else a / b


class Results:
    def __init__(self, data, stat="median"):
        self.data, self.stat = data, stat
        self.by_key = {}
        self.groups = defaultdict(list)
        self.interleaved = {}   # (kind, config) -> extra_info of the round-robin run
        for bench in data["benchmarks"]:
            info = bench.get("extra_info", {})
            self.groups[bench["group"]].append(bench)
            if info.get("kind") in ("train", "predict", "memory", "allocations"):
                self.by_key[(info["kind"], info.get("config"), info.get("impl"))] = bench
            elif info.get("kind") in ("train_interleaved", "predict_interleaved"):
                kind = info["kind"].split("_")[0]
                self.interleaved[(kind, info["config"])] = info

    def get(self, kind, config, impl):
        return self.by_key.get((kind, config, impl))

    def _pick(self, values):
        return min(values) if self.stat == "min" else statistics.median(values)

    def has(self, kind, config, impl):
        inter = self.interleaved.get((kind, config))
        return (inter is not None and impl in inter["wall_s"]) or self.get(kind, config, impl)

    def median(self, kind, config, impl, source="own"):
        """Seconds per round: from the implementation's own benchmark (source="own"; the
        round-robin run when there is none) or from the round-robin run ("interleaved"); the
        median (default) or the fastest round (--stat min)."""
        bench = self.get(kind, config, impl)
        if source == "own" and bench:
            return bench["stats"][self.stat]
        inter = self.interleaved.get((kind, config))
        times = inter["wall_s"].get(impl) if inter else None
        return self._pick(times) if times else None

    def samples(self, kind, config):
        bench = self.get(kind, config, "cnet")
        if bench:
            return bench["extra_info"]["samples"]
        inter = self.interleaved.get((kind, config))
        return inter["samples"] if inter else None

    def rate(self, kind, config, impl, source="own"):
        return div(self.samples(kind, config), self.median(kind, config, impl, source))

    def cpu(self, kind, config, impl):
        """CPU seconds (user + sys, all threads) per round: the median or the least, as the
        round times (from the median alone where a JSON holds no more)."""
        values = self.info(kind, config, impl, "cpu_s_rounds")
        if values is None and self.info(kind, config, impl, "cpu_s") is not None:
            values = [self.info(kind, config, impl, "cpu_s")]
        if values is None:
            inter = self.interleaved.get((kind, config))
            values = inter["cpu_s"].get(impl) if inter else None
        return self._pick(values) if values else None

    def info(self, kind, config, impl, key):
        bench = self.get(kind, config, impl)
        return bench["extra_info"].get(key) if bench else None


# --- sections --------------------------------------------------------------------------------

def header(results):
    data = results.data
    machine = data.get("machine_info", {})
    extra = machine.get("cnet_bench", {})
    cpu = machine.get("cpu", {})
    lines = ["# cnet benchmark results", ""]
    argv = extra.get("argv")
    if argv:
        args = " ".join(argv[1:]) if argv[0].endswith(("pytest", "__main__.py")) else " ".join(argv)
        lines.append(f"Suite: `python -m pytest {args}` at {data.get('datetime', '?')}")
    commit = data.get("commit_info", {})
    if commit.get("id"):
        dirty = " (with uncommitted changes)" if commit.get("dirty") else ""
        lines.append(f"at commit `{commit['id'][:10]}`{dirty}.")
    lines.append("")
    lines.append(f"- CPU: {cpu.get('brand_raw', '?')}, {extra.get('cpu_count', '?')} CPUs "
                 f"({extra.get('cpu_affinity', '?')} usable), {machine.get('system', '')} "
                 f"{machine.get('release', '')}")
    lines.append(f"- Python {machine.get('python_version', '?')}, numpy {extra.get('numpy', '?')}, "
                 f"scipy {extra.get('scipy', '?')}, torch {extra.get('torch') or 'not installed'}"
                 + (f" ({extra['torch_threads']} threads)" if extra.get("torch_threads") else ""))
    if "cnet_threads" in extra:
        lines.append(f"- cnet: team of {extra['cnet_threads'] or 'as many threads as the BLAS uses'}"
                     f" (`cnet.set_num_threads`), layers shared from "
                     f"{extra.get('cnet_threaded_min_work'):,} multiply-adds "
                     f"(`cnet.set_threaded_min_work`)")
    for pool in extra.get("threadpools") or []:
        where = os.path.basename(pool.get("filepath") or "")
        lines.append(f"- {pool.get('user_api')}: {pool.get('internal_api')} {pool.get('version')}"
                     f", {pool.get('num_threads')} threads"
                     + (f", {pool['architecture']}" if pool.get("architecture") else "")
                     + (f" (`{where}`)" if where else ""))
    if extra.get("env"):
        lines.append("- environment: " + ", ".join(f"{k}={v}" for k, v in extra["env"].items()))
    start, end = extra.get("loadavg_start"), extra.get("loadavg_end")
    if start or end:
        fmt = lambda la: "/".join(f"{x:.2f}" for x in la) if la else "?"   # noqa: E731
        lines.append(f"- load average (1/5/15 min) at start {fmt(start)}, at end {fmt(end)}"
                     " (other work on the machine adds noise to every column)")
    lines.append("")
    return lines


def gap(measured, target, at_least):
    """How far a missed target is: the factor still to gain (≥ targets) or to lose (≤)."""
    if measured is None or (measured >= target if at_least else measured <= target):
        return ""
    if measured == 0:
        return "∞× short"
    factor = target / measured if at_least else measured / target
    return f"{fmt_ratio(factor, near_digits(factor, 1))} {'short' if at_least else 'over'}"


def near_digits(x, target):
    """Decimals to print x with beside target: three where two would show them equal (a
    1.084 judged against ≤ 1.08 must not read 1.08)."""
    return 3 if x is not None and round(x, 2) == round(target, 2) else 2


def target_rows(results):
    """(figure, measured text, round-robin text, target text, met or None, gap text). A
    target is judged on the implementations' own benchmarks; the round-robin run's figure,
    where the machine's drift falls on every implementation alike, is shown beside it."""
    rows = []

    def robin(ratio_of):
        r = ratio_of("interleaved")
        return fmt_ratio(r) if r is not None and results.interleaved else "–"

    def speedup(config, target):
        def ratio(source):
            return div(results.rate("train", config, "cnet", source),
                       results.rate("train", config, "reference", source))
        r = ratio("own")
        rows.append((f"{config}: cnet / NumPy reference training throughput",
                     fmt_ratio(r, near_digits(r, target)),
                     robin(ratio), f"≥ {target}×", None if r is None else r >= target,
                     gap(r, target, True)))

    speedup("tiny", 15)
    speedup("mnist", 2.6)
    speedup("wide", 1.35)
    for config, target in (("mnist", 1.2), ("wide", 1.08)):
        def ratio(source, config=config):
            return div(results.median("train", config, "cnet", source),
                       results.median("train", config, "gemm_floor", source))
        r = ratio("own")
        rows.append((f"{config}: cnet step time / GEMM floor (same BLAS)",
                     fmt_ratio(r, near_digits(r, target)),
                     robin(ratio), f"≤ {target}", None if r is None else r <= target,
                     gap(r, target, False)))

    def predict_ratio(source):
        return div(results.rate("predict", "mnist", "cnet", source),
                   results.rate("predict", "mnist", "reference", source))
    r = predict_ratio("own")
    floor = div(results.rate("predict", "mnist", "gemm_floor"),
                results.rate("predict", "mnist", "reference"))
    short = gap(r, 3, True)
    if short and floor is not None:   # what this BLAS allows at most
        short += f" (the products alone: {fmt_ratio(floor)})"
    rows.append(("predict throughput, mnist, cnet / NumPy reference", fmt_ratio(r),
                 robin(predict_ratio), "≥ 3×", None if r is None else r >= 3, short))
    alloc = results.get("allocations", "mnist", "cnet")
    if alloc:
        info = alloc["extra_info"]
        text = (f"{info['arrays_per_step']:g} kept, "
                f"{'some' if info['transient_arrays'] else 'none'} transient "
                f"(peak over {info['steps']} steps: {info['extra_peak_bytes']:+,} B against "
                f"a 0-step call)")
        rows.append(("arrays allocated per training step at steady state", text, "", "0",
                     info["numpy_blocks_left"] == 0 and not info["transient_arrays"], ""))
    else:
        rows.append(("arrays allocated per training step at steady state", "–", "", "0",
                     None, ""))
    cpu = [(c, div(results.cpu("train", c, "cnet"), results.cpu("train", c, "gemm_floor")))
           for c in TRAIN_CONFIGS]
    cpu = [(c, r) for c, r in cpu if r is not None]
    robin_cpu = []
    for c in TRAIN_CONFIGS:
        inter = results.interleaved.get(("train", c))
        if inter and "cnet" in inter["cpu_s"] and "gemm_floor" in inter["cpu_s"]:
            robin_cpu.append((c, div(results._pick(inter["cpu_s"]["cnet"]),
                                     results._pick(inter["cpu_s"]["gemm_floor"]))))
    robin_text = ", ".join(f"{c} {r:.2f}" for c, r in robin_cpu if r is not None) or "–"
    if cpu:
        worst = max(r for _, r in cpu)
        text = ", ".join(f"{c} {r:.2f}" for c, r in cpu)
        rows.append(("CPU seconds per epoch / the GEMM floor's", text, robin_text,
                     "≤ 1.2 (any width)", worst <= 1.2, gap(worst, 1.2, False)))
    else:
        rows.append(("CPU seconds per epoch / the GEMM floor's", "–", robin_text,
                     "≤ 1.2 (any width)", None, ""))
    r = results.info("memory", "mnist", "cnet", "ratio")
    rows.append(("peak memory during fit / budget, mnist", fmt_ratio(r, 3), "", "≤ 1.3",
                 None if r is None else r <= 1.3, gap(r, 1.3, False)))
    return rows


def targets(results):
    lines = ["## DESIGN.md §6 targets", "",
             "Judged on each implementation's own benchmark; the round-robin run (every "
             "implementation in each round, so the machine's drift falls on all alike) "
             "beside it.", "",
             "| figure | measured | round-robin | target | | by |",
             "|---|---:|---:|---:|---|---:|"]
    for figure, measured, robin, target, met, by in target_rows(results):
        status = "–" if met is None else ("met" if met else "**not met**")
        lines.append(f"| {figure} | {measured} | {robin} | {target} | {status} | {by} |")
    lines.append("")
    if os.path.exists(PROFILE_NOTES):
        lines += ["What the profiles show about the targets not met: "
                  "[the end of this report](#what-the-profile-shows).", ""]
    return lines


def training(results):
    present = [i for i in TRAIN_IMPLS if any(results.has("train", c, i) for c in TRAIN_CONFIGS)]
    robin = [info for k, info in results.interleaved.items() if k[0] == "train"]
    # Suites older than these keys warmed the timed model itself, for 0.5 s, and timed 50 ms.
    info = robin[0] if robin else {}
    warm = f"{info.get('warm_s', 0.5):g} s of untimed epochs" + (
        " on a copy of its model" if "warm_s" in info else "")
    timed_ms = info.get("min_timed_s", 0.05) * 1e3
    own = next((results.get("train", c, "cnet")["extra_info"] for c in TRAIN_CONFIGS
                if results.get("train", c, "cnet")), {})
    # Suites older than these keys ran one warm-up epoch and a fixed number of rounds.
    warmups = own.get("warmup_rounds", 1)
    span = (f", at least {own['min_seconds']:g} s of them" if "min_seconds" in own else "")
    lines = ["## Training: one epoch, float32, Adam, shuffled mini-batches", "",
             f"Samples/s from the {results.stat} round of each implementation's own benchmark "
             f"({'one warm-up epoch' if warmups == 1 else 'warm-up epochs'}, then "
             f"back-to-back epochs{span}). cnet step / floor: cnet's epoch time "
             "over the GEMM floor's (only the matrix products of every step, through cnet's BLAS "
             "wrapper on preallocated arrays, called from Python). CPU: user+sys seconds per "
             "epoch (all threads), cnet's over the floor's."
             + (" Round-robin: cnet / NumPy and step / floor again, from "
                "`test_train_interleaved`, where each round "
                f"trains every implementation in rotating order (each after {warm}, long "
                f"enough for the previous library's threads to go idle, then timed over at "
                f"least {timed_ms:g} ms of epochs), so drift in the machine's load falls on "
                f"all alike: where the two disagree, the machine was not steady."
                if robin else ""),
             ""]
    cols = [IMPL_NAMES[i] for i in present]
    ratio_cols = ["cnet / NumPy"]
    if "pytorch" in present:
        ratio_cols.append("cnet / PyTorch")
    if "pytorch_fused" in present:
        ratio_cols.append("cnet / PyTorch fused")
    ratio_cols += ["cnet step / floor", "CPU cnet / floor"]
    if robin:
        ratio_cols += ["round-robin: cnet / NumPy", "cnet step / floor"]
    lines.append("| config | samples × rounds | " + " | ".join(cols + ratio_cols) + " |")
    lines.append("|---|---:|" + "---:|" * (len(cols) + len(ratio_cols)))
    for config in TRAIN_CONFIGS:
        if not results.has("train", config, "cnet"):
            continue
        rates = {i: results.rate("train", config, i) for i in present}
        cells = [fmt_rate(rates[i]) for i in present]
        cells.append(fmt_ratio(div(rates.get("cnet"), rates.get("reference"))))
        if "pytorch" in present:
            cells.append(fmt_ratio(div(rates.get("cnet"), rates.get("pytorch"))))
        if "pytorch_fused" in present:
            cells.append(fmt_ratio(div(rates.get("cnet"), rates.get("pytorch_fused"))))
        cells.append(fmt_ratio(div(results.median("train", config, "cnet"),
                                   results.median("train", config, "gemm_floor"))))
        cells.append(fmt_ratio(div(results.cpu("train", config, "cnet"),
                                   results.cpu("train", config, "gemm_floor"))))
        if robin:
            rr = lambda impl: results.median("train", config, impl, "interleaved")  # noqa: E731
            cells.append(fmt_ratio(div(rr("reference"), rr("cnet"))))
            cells.append(fmt_ratio(div(rr("cnet"), rr("gemm_floor"))))
        own = results.get("train", config, "cnet")
        info = own["extra_info"] if own else results.interleaved[("train", config)]
        rounds = own["stats"]["rounds"] if own else info["rounds"]
        name = f"{config} ({'-'.join(map(str, info['widths']))}, batch {info['batch']})"
        lines.append(f"| {name} | {info['samples']:,} × {rounds} | " + " | ".join(cells) + " |")
    lines.append("")
    notes = []
    for config in TRAIN_CONFIGS:
        floor = results.get("train", config, "gemm_floor")
        info = (floor or {}).get("extra_info") or results.interleaved.get(("train", config), {})
        if info.get("call_overhead_s") and results.median("train", config, "gemm_floor"):
            share = div(info["call_overhead_s"] * info["gemm_calls"],
                        results.median("train", config, "gemm_floor"))
            notes.append(f"{config} {100 * share:.0f}%")
    if notes:
        lines += ["Share of the GEMM floor that is Python calling `cnet._blas.matmul` "
                  "(measured on empty arrays): " + ", ".join(notes) + ".", ""]
    noisy = []
    for config in TRAIN_CONFIGS:
        for impl in TRAIN_IMPLS:
            bench = results.get("train", config, impl)
            if bench and bench["stats"]["rounds"] > 1:
                times = (bench["stats"]["min"], bench["stats"]["max"])
                if times[1] > 1.5 * times[0]:
                    noisy.append(f"{config} {IMPL_NAMES[impl]} {times[0]:.3g}–{times[1]:.3g} s")
    if noisy:
        lines += ["Noisy: rounds of one implementation more than 1.5× apart (other work on the "
                  "machine; treat these ratios with care): " + "; ".join(noisy) + ".", ""]
    return lines


def inference(results):
    impls = [i for i in ("cnet", "reference", "pytorch", "gemm_floor")
             if results.has("predict", "mnist", i)]
    if not impls:
        return []
    lines = ["## Inference: predict 10,000 rows, mnist network", "",
             "GEMM floor: only the matrix products, one per layer over all the rows as the "
             "reference computes them, through cnet's BLAS wrapper with the BLAS's threads (no "
             "bias, activation or argmax): about what a predict with this BLAS needs at least "
             "(cnet splits the rows among its threads instead, which can be a little faster). "
             "GFLOP/s: the products' multiply-adds (two operations each) per second of the "
             "whole call.",
             "",
             f"| | rows/s | {results.stat} | cnet speed-up | GFLOP/s |",
             "|---|---:|---:|---:|---:|"]
    cnet = results.rate("predict", "mnist", "cnet")
    flops = results.info("predict", "mnist", "cnet", "flops")
    gflops = {impl: div(flops and flops / 1e9, results.median("predict", "mnist", impl))
              for impl in impls}
    for impl in impls:
        rate = results.rate("predict", "mnist", impl)
        lines.append(f"| {IMPL_NAMES[impl]} | {fmt_rate(rate)} | "
                     f"{fmt_time(results.median('predict', 'mnist', impl))} | "
                     f"{fmt_ratio(div(cnet, rate))} | "
                     f"{'–' if gflops[impl] is None else f'{gflops[impl]:.0f}'} |")
    if gflops.get("reference"):
        lines += ["", f"Three times the reference's speed (the target) means computing the "
                      f"products at {3 * gflops['reference']:.0f} GFLOP/s or more."]
    lines.append("")
    return lines


def memory(results):
    impls = [i for i in ("cnet", "reference") if results.get("memory", "mnist", i)]
    if not impls:
        return []
    lines = ["## Memory: fit, one epoch, mnist", "",
             "tracemalloc peak (every NumPy buffer and Python object) plus the data, made "
             "before tracing. Budget: params + grads + Adam's two states + one batch's "
             "workspace + the data.", "",
             "| | peak | budget | peak / budget | without the data |", "|---|---:|---:|---:|---:|"]
    for impl in impls:
        info = results.get("memory", "mnist", impl)["extra_info"]
        lines.append(f"| {IMPL_NAMES[impl]} | {fmt_bytes(info['peak_bytes'])} | "
                     f"{fmt_bytes(info['budget_bytes'])} | {info['ratio']:.3f} | "
                     f"{info['ratio_without_data']:.2f} |")
    parts = results.get("memory", "mnist", impls[0])["extra_info"]["budget_parts"]
    lines += ["", "Budget parts: " + ", ".join(f"{k} {fmt_bytes(v)}" for k, v in parts.items())
              + ".", ""]
    return lines


def kernels(results):
    rows = []
    for group, benches in sorted(results.groups.items()):
        by_impl = {b["extra_info"].get("impl"): b for b in benches
                   if b.get("extra_info", {}).get("kind") == "kernel"}
        if not by_impl:
            continue
        cnet, ref = by_impl.get("cnet"), by_impl.get("reference")
        c = cnet["stats"][results.stat] if cnet else None
        r = ref["stats"][results.stat] if ref else None
        rows.append(f"| {group} | {fmt_time(c)} | {fmt_time(r)} | {fmt_ratio(div(r, c), 1)} |")
    if not rows:
        return []
    return [f"## Kernels: compiled vs its cnet.reference twin (float32 unless named, "
            f"{results.stat} per call)",
            "",
            "| kernel and size | cnet | reference | speed-up |", "|---|---:|---:|---:|",
            *rows, ""]


# Hand-written: what perf showed of where the time goes, kept next to the suite and appended
# to every report (the tables change from run to run, the analysis with the code).
PROFILE_NOTES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "PROFILE.md")


def profile_notes():
    if not os.path.exists(PROFILE_NOTES):
        return []
    with open(PROFILE_NOTES) as f:
        return [f.read().rstrip("\n"), ""]


def report(data, stat="median"):
    results = Results(data, stat)
    return "\n".join(header(results) + targets(results) + training(results)
                     + inference(results) + memory(results) + kernels(results)
                     + profile_notes())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("json", nargs="?", help="pytest-benchmark JSON (--benchmark-json)")
    parser.add_argument("-o", "--output", help="write the markdown here (default: stdout)")
    parser.add_argument("--run", action="store_true", help="run the suite first")
    parser.add_argument("--stat", choices=["median", "min"], default="median",
                        help="round time to compare: the median (default, as DESIGN.md) or the "
                             "fastest round (steadier on a machine shared with other work)")
    parser.add_argument("--json", dest="json_path", default=None,
                        help="with --run: where the suite writes its JSON "
                             "(default: /tmp/cnet-bench.json)")
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = []
    if "--" in argv:   # with --run: what follows goes to pytest
        extra = argv[argv.index("--") + 1:]
        argv = argv[:argv.index("--")]
    args = parser.parse_args(argv)
    path = args.json
    command = None
    if args.run:
        path = args.json_path or path or "/tmp/cnet-bench.json"
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        command = [sys.executable, "-m", "pytest", "bench/", f"--benchmark-json={path}", "-q",
                   *extra]
        print("running:", " ".join(command), file=sys.stderr)
        subprocess.run(command, check=True, cwd=root)
    if not path:
        parser.error("give a JSON file, or --run")
    with open(path) as f:
        data = json.load(f)
    text = report(data, args.stat)
    shown = " ".join(["python", "bench/report.py"]
                     + (["--run"] + (["--json", args.json_path] if args.json_path else [])
                        if args.run else [path])
                     + (["--stat", args.stat] if args.stat != "median" else [])
                     + (["-o", args.output] if args.output else [])
                     + (["--", *extra] if extra else []))
    text = text.replace("# cnet benchmark results\n",
                        f"# cnet benchmark results\n\nGenerated by `{shown}`.\n", 1)
    if args.output:
        with open(args.output, "w") as f:
            f.write(text + "\n")
    else:
        print(text)


if __name__ == "__main__":
    main()
