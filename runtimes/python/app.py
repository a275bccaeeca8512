"""CPython for `warden exec python`, as a WASI program built by componentize-py.

`python SCRIPT [ARGS...]` runs SCRIPT (or stdin when there is none) as
`__main__`, with /work (the scratch directory) on sys.path. An uncaught
exception prints its traceback on stderr and exits 1; `sys.exit(n)` exits n.

componentize-py snapshots this module's memory after importing it at build
time, and the snapshot is all the Python there is at run time: a module not
imported now cannot be imported later. So the standard library is imported
here, whole (what WASI can load of it), and everything that depends on the
run itself (arguments, environment) is read at run time, from WASI.
"""

import importlib
import io
import os
import pkgutil
import sys
import traceback

# Imported on request only: they print, open browsers, or are GUI/test code.
_SKIP = {
    "antigravity", "this", "idlelib", "tkinter", "turtle", "turtledemo",
    "test", "lib2to3", "ensurepip", "venv", "pydoc_data", "__phello__",
}


def _preload_stdlib():
    for name in sorted(sys.stdlib_module_names):
        if name in _SKIP or name.startswith("_"):
            continue
        try:
            module = importlib.import_module(name)
        except BaseException:
            continue
        path = getattr(module, "__path__", None)
        if not path:
            continue
        for info in pkgutil.walk_packages(path, prefix=name + ".", onerror=lambda _: None):
            if any(part in _SKIP or part in ("tests", "test") for part in info.name.split(".")):
                continue
            try:
                importlib.import_module(info.name)
            except BaseException:
                pass


_preload_stdlib()

# HTTP through the host (and its network policy) for urllib.request.urlopen;
# the kit's wasi:http client does the requests.
import http_shim  # noqa: E402

http_shim.install()
import warden_plugin._http_wasi  # noqa: E402,F401 - imported now, or never

from wit_world import exports
from wit_world.imports import environment
from wit_world.imports import exit as wasi_exit

# Everything imported so far lives as long as the snapshot: keep the
# collector off it, so that a run's collections do not walk (and dirty the
# pages of) the whole standard library.
import gc  # noqa: E402

gc.collect()
gc.freeze()


def _exit_code(value):
    if value is None:
        return 0
    if isinstance(value, int):
        return value & 0xFF
    print(value, file=sys.stderr)
    return 1


class Run(exports.Run):
    def run(self) -> None:
        # The snapshot was taken at build time; take what this run was given.
        os.environ.clear()
        os.environ.update(dict(environment.get_environment()))
        # componentize-py leaves stdout/stderr unbuffered, and a raw write
        # may be partial: a big print would lose the rest. A buffered writer
        # loops until everything is written.
        sys.stdout = io.TextIOWrapper(io.open(1, "wb", closefd=False), encoding="utf-8", errors="backslashreplace")
        sys.stderr = io.TextIOWrapper(io.open(2, "wb", closefd=False), encoding="utf-8", errors="backslashreplace", line_buffering=True)
        cwd = environment.initial_cwd()
        if cwd:
            os.chdir(cwd)
        args = list(environment.get_arguments())[1:]
        if args:
            path = args[0]
            with open(path, encoding="utf-8") as f:
                source = f.read()
        else:
            path = "<stdin>"
            source = sys.stdin.read()
        sys.argv = args if args else [""]
        if "/work" not in sys.path:
            sys.path.insert(0, "/work")

        code = 0
        try:
            namespace = {"__name__": "__main__", "__file__": path, "__builtins__": __builtins__}
            exec(compile(source, path, "exec"), namespace)
        except SystemExit as e:
            code = _exit_code(e.code)
        except BaseException as e:
            # Start the traceback at the user's code, not at this runner.
            traceback.print_exception(type(e), e, e.__traceback__.tb_next)
            code = 1
        finally:
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except Exception:
                    pass
        if code != 0:
            wasi_exit.exit_with_code(code)
