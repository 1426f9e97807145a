"""lineage: a reproducible artifact-lineage pipeline for ML research, without DVC."""
