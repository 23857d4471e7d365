import ctypes
import os


def square(x, offset=0):
    return {"y": x * x + offset, "pid": os.getpid()}


def crash(x):
    if x == 2:
        ctypes.string_at(0)  # segfault
    return {"y": x}
