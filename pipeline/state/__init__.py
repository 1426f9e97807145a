"""The state on disk: the store (SQLite index, content objects), its caches, and gc.

Everything a workspace keeps under `.pipeline/`, and what a job hands back through files.
May import `pipeline.core` and `pipeline.spec`; never Hydra, W&B, torch or the stages.
A job's side (`objects`, `handback`) never opens the index: see the import contracts.
"""
