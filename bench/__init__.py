"""cqrs-flow's benchmark suite: `python -m bench`.

See bench/__main__.py and docs/PERFORMANCE.md.
"""
