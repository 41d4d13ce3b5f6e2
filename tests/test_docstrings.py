"""Every public name has a numpydoc docstring, and its example runs.

Public: the names of ``tensorprog.__all__`` (but the ``predict`` subpackage, which has its own
reference) and the public methods of the public classes (:class:`tensorprog.Program` with the
methods it inherits from the IR, ``Var``, ``Matrix``, ``Limit``, ``Simulation``,
``ValidationReport`` and the errors).  A function or method needs

* a ``Parameters`` section when it takes arguments (besides ``self``/``cls``),
* a ``Returns`` section when it returns a value,
* an ``Example`` (or ``Examples``) section;

a class needs ``Parameters`` (or ``Attributes``) when its constructor takes arguments, and an
``Example``; a property needs a docstring.  The examples run as doctests with ``tp`` (the
package) and ``np`` (NumPy) in scope; a line that writes files or takes long is marked
``# doctest: +SKIP`` in the docstring itself.
"""
from __future__ import annotations

import ast
import doctest
import inspect
import textwrap

import numpy as np
import pytest

import tensorprog as tp

#: Classes whose public methods are public (besides their own docstring).
CLASSES = ("Program", "Var", "Matrix", "Limit", "Simulation", "ValidationReport")


def _own_methods(cls):
    """Public attributes defined by ``cls`` or its tensorprog base classes, by name."""
    out = {}
    for klass in reversed(cls.__mro__):
        if not klass.__module__.startswith("tensorprog"):
            continue
        for name, value in vars(klass).items():
            if not name.startswith("_"):
                out[name] = value
    return out


def _public():
    """``(qualified name, object, what)`` of every public name; ``what`` is "function",
    "method", "class" or "property"."""
    items = []
    for name in tp.__all__:
        if name in ("predict", "training"):
            continue
        obj = getattr(tp, name)
        items.append((name, obj, "class" if inspect.isclass(obj) else "function"))
        if name in CLASSES:
            for attr, value in _own_methods(obj).items():
                if isinstance(value, (property,)) or hasattr(value, "attrname"):  # cached_property
                    items.append((f"{name}.{attr}", value, "property"))
                elif isinstance(value, (classmethod, staticmethod)):
                    items.append((f"{name}.{attr}", value.__func__, "method"))
                elif inspect.isfunction(value):
                    items.append((f"{name}.{attr}", value, "method"))
    return items


PUBLIC = _public()


def _takes_arguments(fn) -> bool:
    params = list(inspect.signature(fn).parameters.values())
    if params and params[0].name in ("self", "cls"):
        params = params[1:]
    return bool(params)


def _returns_value(fn) -> bool:
    """Whether the function's own body has a ``return <value>`` (or a non-None annotation)."""
    if inspect.signature(fn).return_annotation not in (inspect.Signature.empty, None, "None"):
        return True
    tree = ast.parse(textwrap.dedent(inspect.getsource(fn)))

    def walk(node, top):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda,
                                  ast.ClassDef)) and not top:
                continue
            if isinstance(child, ast.Return) and child.value is not None:
                return True
            if walk(child, False):
                return True
        return False

    return walk(tree.body[0], False)


def _constructor_takes_arguments(cls) -> bool:
    init = None
    for klass in cls.__mro__:
        if "__init__" in vars(klass):
            init = vars(klass)["__init__"]
            break
    if init is None or not inspect.isfunction(init) \
            or not getattr(init, "__module__", "").startswith("tensorprog"):
        return False
    return _takes_arguments(init)


def _section(doc: str, *titles: str) -> bool:
    lines = doc.splitlines()
    for i, line in enumerate(lines[:-1]):
        if line.strip() in titles and set(lines[i + 1].strip()) == {"-"}:
            return True
    return False


def _doc(obj) -> str | None:
    doc = obj.__doc__ if not isinstance(obj, property) else obj.fget.__doc__
    return inspect.cleandoc(doc) if doc else None


@pytest.mark.parametrize("name, obj, what", PUBLIC, ids=[item[0] for item in PUBLIC])
def test_sections(name, obj, what):
    doc = _doc(obj)
    assert doc, f"{name} has no docstring"
    if what == "property":
        return
    missing = []
    if what == "class":
        if _constructor_takes_arguments(obj) and not _section(doc, "Parameters", "Attributes"):
            missing.append("Parameters")
    else:
        if _takes_arguments(obj) and not _section(doc, "Parameters"):
            missing.append("Parameters")
        if _returns_value(obj) and not _section(doc, "Returns"):
            missing.append("Returns")
    if not _section(doc, "Example", "Examples"):
        missing.append("Example")
    assert not missing, f"{name}: docstring lacks {', '.join(missing)}"


def _doctests():
    finder = doctest.DocTestFinder(recurse=False)
    out = []
    for name, obj, what in PUBLIC:
        target = obj.fget if isinstance(obj, property) else obj
        for test in finder.find(target, name, globs={}):
            if test.examples:
                out.append((name, test))
    return out


DOCTESTS = _doctests()


@pytest.mark.parametrize("name, test", DOCTESTS, ids=[name for name, _ in DOCTESTS])
def test_examples_run(name, test, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # examples that write files write them here
    test.globs = {"tp": tp, "np": np}
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    out = []
    runner.run(test, out=out.append)
    assert runner.failures == 0, "".join(out)
