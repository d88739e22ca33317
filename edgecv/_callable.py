"""``edgecv.compress``, ``edgecv.export`` and ``edgecv.bench`` are subpackages and, called, the API
functions of :mod:`edgecv.api` (``edgecv.compress(net, recipe)``; ``edgecv.compress.load_recipe``).

Python binds a subpackage to its parent's attribute when it is first imported, so the function
and the subpackage cannot simply share the name: the subpackage modules are made callable instead.
"""
from __future__ import annotations

import sys
import types
from typing import Any


class _CallableModule(types.ModuleType):
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from edgecv import api

        return getattr(api, self.__name__.rsplit(".", 1)[-1])(*args, **kwargs)


def make_callable(module_name: str) -> None:
    """Let ``module_name`` (edgecv.compress / edgecv.export / edgecv.bench) be called as its API function."""
    sys.modules[module_name].__class__ = _CallableModule
