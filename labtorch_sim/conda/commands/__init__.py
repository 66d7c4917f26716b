"""One module per conda subcommand; each exposes ``run(context, args) -> exit status``."""
