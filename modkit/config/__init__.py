"""Configuration: ``modkit.toml`` project defaults and YAML recipes, validated before anything runs."""
