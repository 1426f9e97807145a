"""Execution: a project opened with Hydra, stages launched, W&B tracked, pulled and synced.

Composes configs (Hydra, hydra-zen), runs a plan wave by wave through Hydra's launchers,
tracks each job with the W&B callback, and talks to W&B's server (`remote`, `sync`,
`pull`). May import `pipeline.state`, `pipeline.core`, `pipeline.spec` and the stages;
only `callback`, `sync`, `remote` and `wandb_file` import wandb.
"""
