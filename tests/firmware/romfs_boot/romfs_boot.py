# Runs in MicroPython, started by tests/firmware/romfs_run.py: mount the ROMFS image
# the launcher mapped read-only outside the GC heap, then run the module named by
# the first argument from it (its own sys.argv[0]), as an ESP32 runs from ROMFS.
import os
import sys

import uctypes  # type: ignore[import-not-found]
import vfs  # type: ignore[import-not-found]

_image = uctypes.bytearray_at(
    int(os.getenv("PATROL_ROMFS_ADDR")), int(os.getenv("PATROL_ROMFS_BYTES"))
)
vfs.mount(vfs.VfsRom(_image), "/rom")
sys.path.insert(0, "/rom")
sys.path.insert(1, "/rom/lib")
del _image
sys.argv.pop(0)  # the module to run becomes argv[0], its arguments follow
__import__(sys.argv[0])
