"""search."""

__all__ = ['candidates', 'evaluate', 'noise', 'paths', 'population', 'protocols', 'random_search', 'report', 'result', 'scoring', 'zero_order']  # the package's modules; import what you need from them
