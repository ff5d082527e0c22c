"""Write tests/golden/empirical_nt065.npz: neural-tangents 0.6.5's empirical NTKs (all three
of its implementations, float64) for the cases in reference/empirical_parity.py.

    .venv/bin/python -m reference.make_empirical_golden      (needs `make reference`)
"""
import os

import numpy as np

from reference import empirical_parity


def main():
    arrays = empirical_parity.payload()
    kernels = empirical_parity.run_reference(arrays)
    os.makedirs(os.path.dirname(empirical_parity.GOLDEN), exist_ok=True)
    np.savez_compressed(empirical_parity.GOLDEN, **arrays,
                        **{f"nt/{k}": v for k, v in kernels.items()})
    errors = [k for k in kernels if k.endswith("/error")]
    print(f"wrote {empirical_parity.GOLDEN}: {len(kernels)} kernels, {len(errors)} errors")
    for k in errors:
        print(" ", k, kernels[k])


if __name__ == "__main__":
    main()
