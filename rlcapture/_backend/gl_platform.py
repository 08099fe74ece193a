"""Which OpenGL platform MuJoCo renders with where there is no display: EGL, else OSMesa.

MuJoCo (Gymnasium's MuJoCo envs, dm_control through Shimmy) picks its OpenGL
platform from ``MUJOCO_GL``, and PyOpenGL from ``PYOPENGL_PLATFORM``. Unset,
both try GLFW first, which needs a display: on a headless server a recording
then failed with ``mujoco.FatalError: an OpenGL platform library has not been
loaded into this process`` after dozens of GLFW warnings, though the same run
with ``MUJOCO_GL=egl`` (Mesa's EGL, no GPU needed) or ``MUJOCO_GL=osmesa``
renders correct frames. So where neither variable is set and there is no
display (no ``DISPLAY``, no ``WAYLAND_DISPLAY``), rlcapture picks for the user:
EGL if a device display initializes (a GPU's driver, or Mesa's software
device), else OSMesa if its library loads, and sets both variables, since
OSMesa needs ``PYOPENGL_PLATFORM=osmesa`` too. A variable the user set always
wins (the other of the pair is completed to match it). Nothing is probed
unless ``mujoco`` is installed: without it no env reads these variables.

The choice is made where rlcapture first imports or makes an env in a process
(before the env's module is imported: dm_control picks its platform when it
is imported, and a forked worker inherits that), set in that process's
environment (where it was unset, with no display, MuJoCo could not render at
all), and handed to the worker processes, which set it before they make their
envs. It is written in ``run.json`` (``"gl"``).

The probe costs about 25 ms (EGL with Mesa's software device), once per process.
"""

from __future__ import annotations

import ctypes
import functools
import importlib.util
import os
import warnings
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "GL_VARIABLES",
    "GLPlatform",
    "choose",
    "egl_loads",
    "osmesa_loads",
    "prepare",
    "quiet_glfw",
]

#: The variables that name the platform: MuJoCo's and PyOpenGL's.
GL_VARIABLES = ("MUJOCO_GL", "PYOPENGL_PLATFORM")
_HEADLESS = ("egl", "osmesa")
_EGL_PLATFORM_DEVICE_EXT = 0x313F


@dataclass(frozen=True)
class GLPlatform:
    """The platform a process renders MuJoCo with, and who picked it.

    Attributes:
        platform: "egl", "osmesa", what the user set, or None (left to the
            libraries: GLFW on a display; nothing works where ``source`` is "none").
        source: "set" (the user's ``MUJOCO_GL``/``PYOPENGL_PLATFORM``),
            "display" (a display: the libraries' own default, GLFW),
            "chosen" (picked here), "none" (no display, and neither EGL nor
            OSMesa loads), or "no mujoco" (not installed: nothing to pick).
        variables: What to set where unset, so that it renders so.
    """

    platform: str | None
    source: str
    variables: dict[str, str] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        """For ``run.json``."""
        return {"platform": self.platform, "source": self.source}

    def apply(self, environ: MutableMapping[str, str]) -> None:
        """Set :attr:`variables` in ``environ`` where unset (the user's setting wins)."""
        for name, value in self.variables.items():
            environ.setdefault(name, value)


def _headless(environ: MutableMapping[str, str]) -> bool:
    return not environ.get("DISPLAY") and not environ.get("WAYLAND_DISPLAY")


#: What :func:`prepare` chose and set in this process's environment, to be told
#: apart from a user's setting when it is asked again.
_set_here: list[GLPlatform] = []


def choose(environ: MutableMapping[str, str] | None = None) -> GLPlatform:
    """The platform to render MuJoCo with in a process whose environment is ``environ``."""
    environ = os.environ if environ is None else environ
    for earlier in _set_here:
        if environ is os.environ and all(environ.get(k) == v for k, v in earlier.variables.items()):
            return earlier
    mujoco_gl = environ.get("MUJOCO_GL", "").strip().lower()
    pyopengl = environ.get("PYOPENGL_PLATFORM", "").strip().lower()
    if mujoco_gl or pyopengl:
        complete: dict[str, str] = {}
        if mujoco_gl in _HEADLESS and not pyopengl:
            complete["PYOPENGL_PLATFORM"] = mujoco_gl
        elif pyopengl in _HEADLESS and not mujoco_gl and _headless(environ):
            complete["MUJOCO_GL"] = pyopengl
        return GLPlatform(mujoco_gl or pyopengl, "set", complete)
    if not _headless(environ):
        return GLPlatform(None, "display")
    if importlib.util.find_spec("mujoco") is None:
        return GLPlatform(None, "no mujoco")
    found = _probe()
    if found is None:
        return GLPlatform(None, "none")
    return GLPlatform(found, "chosen", dict.fromkeys(GL_VARIABLES, found))


def prepare(environ: MutableMapping[str, str] | None = None) -> GLPlatform:
    """:func:`choose`, and set what it chose in ``environ`` (default: this process's)."""
    environ = os.environ if environ is None else environ
    platform = choose(environ)
    platform.apply(environ)
    if platform.source == "chosen" and environ is os.environ:
        _set_here[:] = [platform]
    return platform


def quiet_glfw(environ: MutableMapping[str, str]) -> None:
    """Without a display, keep GLFW's warnings ("The DISPLAY environment variable is missing").

    For a worker process (never the user's): GLFW cannot open a window there,
    and MuJoCo's failure to render says so in one line (``envs.opengl_hint``);
    its warnings, one per attempt, only came before that line.
    """
    if _headless(environ):
        warnings.filterwarnings("ignore", module="glfw")


@functools.cache
def _probe() -> str | None:
    """ "egl", "osmesa" or None: what loads here (libraries do not come and go in a process)."""
    if egl_loads():
        return "egl"
    if osmesa_loads():
        return "osmesa"
    return None


def _load(*names: str) -> Any:
    for name in names:
        try:
            return ctypes.CDLL(name, mode=ctypes.RTLD_LOCAL)
        except OSError:
            continue
    return None


def egl_loads() -> bool:
    """Whether EGL initializes a device display here, as MuJoCo's EGL context needs.

    ``libEGL`` alone is not enough: without a driver behind it (Mesa's
    ``libegl-mesa0`` and ``libgl1-mesa-dri``, or a GPU's) no device initializes.
    PyOpenGL also needs ``libOpenGL`` or ``libGL``.
    """
    egl = _load("libEGL.so.1", "libEGL.so")
    if egl is None or _load("libOpenGL.so.0", "libGL.so.1", "libOpenGL.so", "libGL.so") is None:
        return False
    try:
        get_proc = egl.eglGetProcAddress
        get_proc.restype, get_proc.argtypes = ctypes.c_void_p, [ctypes.c_char_p]
        query_address = get_proc(b"eglQueryDevicesEXT")
        display_address = get_proc(b"eglGetPlatformDisplayEXT")
        if not query_address or not display_address:
            return False
        query = ctypes.CFUNCTYPE(
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.POINTER(ctypes.c_void_p),
            ctypes.POINTER(ctypes.c_int),
        )(query_address)
        get_display = ctypes.CFUNCTYPE(
            ctypes.c_void_p, ctypes.c_uint, ctypes.c_void_p, ctypes.POINTER(ctypes.c_int)
        )(display_address)
        devices, count = (ctypes.c_void_p * 16)(), ctypes.c_int(0)
        if not query(16, devices, ctypes.byref(count)):
            return False
        initialize, terminate = egl.eglInitialize, egl.eglTerminate
        initialize.argtypes = [
            ctypes.c_void_p,
            ctypes.POINTER(ctypes.c_int),
            ctypes.POINTER(ctypes.c_int),
        ]
        terminate.argtypes = [ctypes.c_void_p]
        for k in range(count.value):
            display = get_display(_EGL_PLATFORM_DEVICE_EXT, devices[k], None)
            major, minor = ctypes.c_int(0), ctypes.c_int(0)
            if display and initialize(display, ctypes.byref(major), ctypes.byref(minor)):
                terminate(display)
                return True
    except (AttributeError, OSError):  # a libEGL without these entry points
        return False
    return False


def osmesa_loads() -> bool:
    """Whether OSMesa's library loads here (Debian/Ubuntu: ``libosmesa6``)."""
    lib = _load("libOSMesa.so.8", "libOSMesa.so.6", "libOSMesa.so")
    return lib is not None and hasattr(lib, "OSMesaCreateContextExt")
