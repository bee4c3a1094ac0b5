"""``factory.build(task, name, **options)``: build a model, config or component (see
:func:`factory.build.builder.build`); calling this package calls that function.

The build wing: resolving a name, fetching and checking files, constructing and loading the object.
"""
from factory import callable_wing

callable_wing(__name__, "build")
