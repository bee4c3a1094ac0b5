"""An example factory plugin: the custom architecture ``toy-mlp``.

The registry finds this package through its ``factory.registry`` entry point and
reads ``registry.d/``; importing the package is never needed for that.
"""
