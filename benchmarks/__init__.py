"""Speed and memory benchmarks: our hot paths against naive baselines (`python -m benchmarks`)."""
