"""The run directory on disk, the bottom layer that training, evaluation and the run lifecycle share.

``layout`` names every file of a run (:class:`~modkit.storage.layout.RunDir`); ``files`` writes them
atomically and reads them strictly; ``state_file`` turns nested state into safetensors + JSON (nothing
executes on load); ``train_state`` is the one schema of the loop's counters, the divergence guard's
state and the RNG inside a checkpoint; ``checkpoint`` is the checkpoint's layout, rotation, format
check and recovery. Nothing here imports the training loop or the run lifecycle.
"""
