"""Contracts and math: the modality and fusion contracts, the engine, batches, Gaussian experts, subsets."""
