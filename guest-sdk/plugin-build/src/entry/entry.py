"""The entry point of every Python plugin build (written by the builder next to
the plugin): the plugin's own `WitWorld`, except that an exception escaping one
of its exports goes back to the host as the export's error, with its traceback
(each world's function returns result<_, string>), instead of trapping with
nothing to show but `unreachable`. `Err` raised on purpose passes unchanged."""

import linecache
import os
import sys
import traceback

from componentize_py_types import Err

import plugin as _plugin

_EXPORTS = {{exports}}


def _cache_sources():
    """Keeps the source of the plugin's own modules (not the standard library's) in
    linecache, read now, while the build runs the module: a plugin has no file system when it
    runs, and a traceback without its source lines is much harder to act on. An entry
    without an mtime is never re-checked against the (absent) file."""
    dirs = {os.path.dirname(os.path.abspath(_plugin.__file__))}
    helper = sys.modules.get("syncbase")
    if helper is not None and getattr(helper, "__file__", None):
        dirs.add(os.path.dirname(os.path.abspath(helper.__file__)))
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if not path or not path.endswith(".py"):
            continue
        if os.path.dirname(os.path.abspath(path)) not in dirs:
            continue
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except OSError:
            continue
        linecache.cache[path] = (len(text), None, text.splitlines(True), path)


def _no_files(filename, module_globals=None):
    return []


_cache_sources()
# A plugin runs without WASI (every call of it traps): a traceback through a module whose
# source is not cached (the standard library's) shows no source line instead of reading a
# file.
linecache.updatecache = _no_files


def _message(e):
    tb = e.__traceback__
    # The first frame is this wrapper's call: the author's frames follow.
    tb = tb.tb_next if tb is not None else None
    return "".join(traceback.format_exception(type(e), e, tb)).rstrip()


def _guard(name):
    inner = getattr(_plugin.WitWorld, name)

    def call(self, *args):
        try:
            return inner(self, *args)
        except Err:
            raise
        except Exception as e:
            raise Err(_message(e)) from None

    call.__name__ = name
    return call


class WitWorld(_plugin.WitWorld):
    pass


for _name in _EXPORTS:
    setattr(WitWorld, _name, _guard(_name))
