"""The stages, one module each: its config, a pure core over Arrow tables, its shard tasks and run(). chain.py
lists them in order."""
