"""Speed and memory benchmarks, side by side with neural-tangents (``make bench``)."""
