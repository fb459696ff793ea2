"""Compile a C source into a shared library at first use and cache it per user.

The library is built with the system C compiler (``$CC``, else ``cc``/``gcc``) using plain C (no torch
headers, so a build takes about a second) and is cached under ``$EUCLIDNET_CACHE_DIR``, else
``$XDG_CACHE_HOME/euclidnet``, else ``~/.cache/euclidnet`` (a private temporary directory if none is
writable). The file name is a hash of the source, the compiler, its version, the flags and, because the code
is compiled for the host CPU, the CPU's model and feature flags; so a cache shared between different
machines never loads code built for another CPU. Writes go to a unique temporary file first and are
renamed into place atomically, so concurrent processes never see a partial library.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

__all__ = ["KernelBuildError", "compile_library", "cache_dir", "compiler_flags"]

_LOCK = threading.Lock()


class KernelBuildError(RuntimeError):
    """The C compiler is missing or failed; callers fall back to pure torch."""


def cache_dir() -> Path:
    """The directory holding compiled kernels (created if needed)."""
    candidates = []
    if os.environ.get("EUCLIDNET_CACHE_DIR"):
        candidates.append(Path(os.environ["EUCLIDNET_CACHE_DIR"]))
    xdg = os.environ.get("XDG_CACHE_HOME")
    candidates.append(Path(xdg) / "euclidnet" if xdg else Path.home() / ".cache" / "euclidnet")
    uid = os.getuid() if hasattr(os, "getuid") else "user"
    candidates.append(Path(tempfile.gettempdir()) / f"euclidnet-kernels-{uid}")
    for d in candidates:
        try:
            d.mkdir(parents=True, exist_ok=True)
            if os.access(d, os.W_OK):
                return d
        except OSError:
            continue
    raise KernelBuildError(f"no writable cache directory among {[str(c) for c in candidates]}")


def _compiler() -> str:
    for name in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if name and shutil.which(name):
            return shutil.which(name)  # type: ignore[return-value]
    raise KernelBuildError("no C compiler found (set $CC or install gcc)")


def _cpu_signature() -> str:
    """Model and feature flags of this CPU (part of the cache key, since we compile with -march=native)."""
    sig = [platform.machine(), platform.system()]
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key = line.split(":", 1)[0].strip()
                if key in ("model name", "flags", "Features", "CPU part", "CPU implementer"):
                    sig.append(line.strip())
                if line.strip() == "":  # the first processor is enough
                    break
    except OSError:
        sig.append(platform.processor())
    return "\n".join(sig)


def _compiler_version(cc: str) -> str:
    try:
        out = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as e:
        raise KernelBuildError(f"cannot run the C compiler {cc}: {e}") from e
    return out.stdout.splitlines()[0] if out.stdout else ""


def _supports(cc: str, flag: str) -> bool:
    with tempfile.TemporaryDirectory() as d:
        src = Path(d) / "t.c"
        src.write_text("int f(int x) { return x + 1; }\n")
        try:
            r = subprocess.run(
                [cc, flag, "-c", str(src), "-o", str(Path(d) / "t.o")], capture_output=True, timeout=60
            )
        except (OSError, subprocess.SubprocessError):
            return False
        return r.returncode == 0


def compiler_flags(cc: str) -> list[str]:
    """Flags used for kernels: optimised, position independent, no errno from math, exact IEEE otherwise."""
    flags = ["-O3", "-fPIC", "-shared", "-pthread", "-fno-math-errno", "-std=gnu11"]
    for extra in ("-fopenmp-simd", "-march=native"):
        if _supports(cc, extra):
            flags.append(extra)
    return flags


def compile_library(name: str, source: str) -> ctypes.CDLL:
    """Compile ``source`` (C) to ``<cache>/<name>-<hash>.so`` unless cached, and load it.

    Raises:
        KernelBuildError: no compiler, no writable cache directory, or a failed build/load.
    """
    with _LOCK:
        cc = _compiler()
        flags = compiler_flags(cc)
        key = "\n".join([source, cc, _compiler_version(cc), " ".join(flags), _cpu_signature()])
        digest = hashlib.sha256(key.encode()).hexdigest()[:20]
        directory = cache_dir()
        target = directory / f"{name}-{digest}.so"
        if not target.exists():
            fd, tmp_src = tempfile.mkstemp(prefix=f".{name}-", suffix=".c", dir=directory)
            tmp_lib = tmp_src[:-2] + ".so"
            try:
                with os.fdopen(fd, "w") as f:
                    f.write(source)
                try:
                    r = subprocess.run(
                        [cc, *flags, tmp_src, "-o", tmp_lib, "-lm"], capture_output=True, text=True, timeout=300
                    )
                except (OSError, subprocess.SubprocessError) as e:
                    raise KernelBuildError(f"running {cc} failed: {e}") from e
                if r.returncode != 0:
                    raise KernelBuildError(f"{cc} failed to build {name}:\n{r.stderr[-4000:]}")
                os.replace(tmp_lib, target)  # atomic: other processes see the old state or the whole file
            finally:
                for p in (tmp_src, tmp_lib):
                    try:
                        os.unlink(p)
                    except FileNotFoundError:
                        pass
        try:
            return ctypes.CDLL(str(target))
        except OSError as e:
            raise KernelBuildError(f"cannot load {target}: {e}") from e


class LazyLibrary:
    """A kernel library built and loaded on first use, once per process (thread-safe).

    ``declare(lib)`` sets the ctypes signatures. A build failure is remembered: :meth:`get` then returns
    ``None`` and :attr:`error` says why, so callers fall back to their pure-torch paths.
    """

    def __init__(self, name: str, source: Callable[[], str], declare: Callable[[ctypes.CDLL], None]) -> None:
        self.name = name
        self._source = source
        self._declare = declare
        self._lib: ctypes.CDLL | None = None
        self.error: str | None = None
        self._lock = threading.Lock()

    def get(self) -> ctypes.CDLL | None:
        if self._lib is not None or self.error is not None:
            return self._lib
        with self._lock:
            if self._lib is not None or self.error is not None:
                return self._lib
            try:
                lib = compile_library(self.name, self._source())
            except KernelBuildError as e:
                self.error = str(e)
                return None
            self._declare(lib)
            self._lib = lib
            return lib
