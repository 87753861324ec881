"""A run directory: its files (atomic writes), its checkpoints (safetensors, format-checked), its lifecycle
(start, lock, resume, load, export) and loading a finished run back."""
