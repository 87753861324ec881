"""Training: assembling a setup from a recipe, the trainer loop, acceleration and DDP."""
