"""The `keyscope` command: a thin registry of subcommands, each defined once by the module that runs it."""
