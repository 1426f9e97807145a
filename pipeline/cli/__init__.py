"""The command line: parsing, the commands, and the only code that prints.

`main` parses and dispatches, `run` and `team` carry out the commands that run or
exchange, `show` the read-only ones; `text`, `diagram` and `report` render. May import
everything below it: `pipeline.execution`, `pipeline.state`, `pipeline.core`.
"""
