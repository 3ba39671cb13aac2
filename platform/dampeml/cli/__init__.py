"""The `dampeml` command line: one subcommand per user task, each with its own --help."""
