"""modkit's own plugin: the subset samplers. Registered like any other plugin, through the hook."""
from modkit.plugins.hookspecs import hookimpl
from modkit.core.subsets import BUILTIN_SAMPLERS


@hookimpl
def modkit_register(registry):
    for name, cls in BUILTIN_SAMPLERS.items():
        registry.add_sampler(name, cls)
