"""Something done just before the n-th call of a function: the scripts here kill or signal a run."""


def before_nth_call(owner, name: str, n: int, action) -> None:
    """Replace ``owner.<name>`` by a wrapper that calls ``action()`` before its ``n``-th call."""
    real, calls = getattr(owner, name), 0

    def wrapper(*args, **kwargs):
        nonlocal calls
        calls += 1
        if calls == n:
            action()
        return real(*args, **kwargs)

    setattr(owner, name, wrapper)
