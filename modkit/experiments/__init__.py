"""Many runs at once: sweeps over recipe values."""
