"""``python -m benchmarks [--out DIR] [--quick]``: every benchmark, one after the other.

Each writes its JSON and Markdown tables under DIR; neural-tangents columns appear when the
reference environment (``make reference``) exists.

``python -m benchmarks --gpu [--out DIR] [--allow-cpu]`` runs only :mod:`benchmarks.bench_gpu`
(``make bench-gpu``): a few minutes on an NVIDIA GPU; without one it writes a note and exits 0.
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
    parser.add_argument("--gpu", action="store_true",
                        help="only the GPU benchmark (benchmarks/bench_gpu.py)")
    parser.add_argument("--allow-cpu", action="store_true",
                        help="with --gpu and no GPU: run its cases at tiny sizes")
    args = parser.parse_args(argv)
    if args.gpu:
        from benchmarks import bench_gpu
        bench_gpu.main(args.out, allow_cpu=args.allow_cpu)
        return
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
