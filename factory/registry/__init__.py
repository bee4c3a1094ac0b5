"""``factory.registry()``: the default dispatch table (see :func:`factory.registry.loader.registry`);
calling this package calls that function.

The registry wing: YAML sources -> validated documents -> the merged, immutable dispatch table.
"""

from factory import callable_wing

callable_wing(__name__, "registry")
