"""Side-by-side benchmarks of the pipeline against DVC: `python -m bench`."""
