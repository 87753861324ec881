"""What a person looks at: generation from any subset, sample grids, figures and report.md."""
