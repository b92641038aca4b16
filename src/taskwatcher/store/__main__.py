"""``python -m taskwatcher.store`` is not a command: the commands are ``taskwatcher ...``."""

if __name__ == "__main__":
    from ..entrypoints import not_a_command

    not_a_command()
