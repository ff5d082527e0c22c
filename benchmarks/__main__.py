"""``python -m benchmarks [--out DIR] [--quick]``: every benchmark, one after the other.

Each writes its JSON and Markdown tables under DIR; neural-tangents columns appear when the
reference environment (``make reference``) exists.
"""
import argparse
import importlib
import inspect

MODULES = ("benchmarks.bench_empirical", "benchmarks.bench_stax", "benchmarks.bench_approx",
           "benchmarks.bench_real")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--out", default="results/bench")
    parser.add_argument("--quick", action="store_true", help="smaller cases")
    parser.add_argument("--only", choices=[m.split("_")[-1] for m in MODULES])
    args = parser.parse_args(argv)
    for name in MODULES:
        if args.only and not name.endswith(args.only):
            continue
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:
            print(f"skipping {name}: {err}")
            continue
        print(f"== {name}", flush=True)
        kwargs = {"quick": args.quick} if "quick" in inspect.signature(module.main).parameters \
            else {}
        module.main(args.out, **kwargs)


if __name__ == "__main__":
    main()
