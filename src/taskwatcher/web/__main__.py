"""``python -m taskwatcher.web`` is not a command: the web is ``taskwatcher serve``."""

if __name__ == "__main__":
    from ..entrypoints import not_a_command

    not_a_command()
