"""search."""

__all__ = ['candidates', 'evaluate', 'evolution', 'fk_steering', 'noise', 'particle_recipe', 'paths', 'population', 'protocols', 'pruning', 'random_search', 'report', 'result', 'scoring', 'stepwise', 'zero_order']  # the package's modules; import what you need from them
