"""``python -m taskwatcher.compat`` is not a command: the 1.7 ones are ``taskwatcher.control`` etc."""

if __name__ == "__main__":
    from ..entrypoints import not_a_command

    not_a_command()
