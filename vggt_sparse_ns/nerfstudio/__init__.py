"""nerfstudio glue: the ns-process-data subcommand, its import hook, the dataparser and method plugins.

Kept empty of imports: nerfstudio loads the plugin entry points at start-up, and the import hook runs
inside every interpreter.
"""
