"""Run the MicroPython Unix port with a ROMFS image mapped outside its GC heap.

Usage: ``python romfs_run.py IMAGE [-X heapsize=48K] MODULE [ARGS...]``

Why: on an ESP32 the firmware's ``.mpy`` modules sit in a ROMFS flash partition
that the MMU maps into the address space; MicroPython then executes their bytecode
in place and only the objects the imports create (functions, classes, dicts, qstr
pool entries) use the GC heap. The Unix port loads every ``.mpy`` from a file into
its heap instead (~30 KB more for the wearable), and its build has no ``ffi`` module
to map memory itself. ``.venv/bin/micropython`` is a CPython process running the
port's ``micropython_run`` extension in-process, so this launcher does the same
with one step before it: it maps IMAGE read-only (``mmap`` + ``mprotect``, like
flash), passes its address in ``PATROL_ROMFS_ADDR`` / ``PATROL_ROMFS_BYTES``, and
runs ``romfs_boot`` (next to this file), which wraps the mapping with
``uctypes.bytearray_at``, mounts it as ``vfs.VfsRom`` on ``/rom``, puts ``/rom``
first on ``sys.path`` and runs MODULE from the image. Nothing of the image is
copied into the heap; a write to it would fault, as on flash.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import sys
from pathlib import Path

from micropython_run import run_main  # type: ignore[import-not-found]  # the port .venv/bin/micropython runs

HERE = Path(__file__).resolve().parent


def main(argv: list[str]) -> int:
    """Map ``argv[1]`` read-only and run the port with the rest of ``argv``."""
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    image_path, rest = argv[1], argv[2:]
    options: list[str] = []
    while rest and rest[0] == "-X":
        options += rest[:2]
        rest = rest[2:]
    with open(image_path, "rb") as f:
        mapping = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
    address = ctypes.addressof(ctypes.c_char.from_buffer(mapping))
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    if libc.mprotect(address, len(mapping), mmap.PROT_READ) != 0:
        raise OSError(ctypes.get_errno(), "mprotect of the ROMFS mapping failed")
    os.environ["PATROL_ROMFS_ADDR"] = str(address)
    os.environ["PATROL_ROMFS_BYTES"] = str(len(mapping))
    os.environ["MICROPYPATH"] = str(HERE / "romfs_boot")
    code: int = run_main(["micropython", *options, "-m", "romfs_boot", *rest])
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv))
